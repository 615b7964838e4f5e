#include "starling/version.h"

#include "starling/build_id.h"

#ifndef STARLING_RELEASE
#error "STARLING_RELEASE must be defined by the build"
#endif

namespace starling {

const char* ReleaseVersion() { return STARLING_RELEASE; }
const char* BuildId() { return STARLING_BUILD_ID; }

std::string VersionLine(const std::string& program, const std::string& what, unsigned min, unsigned max) {
  const std::string range = min == max ? std::to_string(min) : std::to_string(min) + "-" + std::to_string(max);
  return program + " " + ReleaseVersion() + " (build " + BuildId() + ", " + what + " " + range + ")";
}

}  // namespace starling
