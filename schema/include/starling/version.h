// What a binary says it is: `starlingd --version`, `starling --version`.
#pragma once

#include <string>

namespace starling {

// The release, e.g. "0.1.0" (the project's version in CMakeLists.txt).
const char* ReleaseVersion();
// The commit built: 12 hex digits, "-dirty" when the tree had uncommitted
// changes, or "unknown" when built outside a git checkout.
const char* BuildId();
// The gossip protocol versions this binary understands. A second build of
// the same objects with another version unit (starlingd-next) differs only
// here and in the release, so tests can upgrade a cluster from one real
// binary to another.
unsigned ProtocolMin();
unsigned ProtocolMax();
// The data dir format this binary writes (node/host/data_format.h): it
// migrates older ones and refuses newer ones.
unsigned DataFormat();
// "starlingd 0.1.0 (build 1a2b3c4d5e6f, protocol 1-2)": `what` names the
// range (protocol, api); "1-2" when min and max differ.
std::string VersionLine(const std::string& program, const std::string& what, unsigned min, unsigned max);

}  // namespace starling
