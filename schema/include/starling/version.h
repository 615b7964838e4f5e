// What a binary says it is: `starlingd --version`, `starling --version`.
#pragma once

#include <string>

namespace starling {

// The release, e.g. "0.1.0" (the project's version in CMakeLists.txt).
const char* ReleaseVersion();
// The commit built: 12 hex digits, "-dirty" when the tree had uncommitted
// changes, or "unknown" when built outside a git checkout.
const char* BuildId();
// "starlingd 0.1.0 (build 1a2b3c4d5e6f, protocol 1)": `what` names the
// range (protocol, api); "1-2" when min and max differ.
std::string VersionLine(const std::string& program, const std::string& what, unsigned min, unsigned max);

}  // namespace starling
