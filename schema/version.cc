#include "starling/version.h"

#include "starling/build_id.h"

#ifndef STARLING_RELEASE
#error "STARLING_RELEASE must be defined by the build"
#endif
// The gossip protocol range (membership/include/starling/membership/config.h
// says what each version means).
#ifndef STARLING_PROTOCOL_MIN
#define STARLING_PROTOCOL_MIN 1
#endif
#ifndef STARLING_PROTOCOL_MAX
#define STARLING_PROTOCOL_MAX 2
#endif
#ifndef STARLING_DATA_FORMAT
#define STARLING_DATA_FORMAT 2
#endif

namespace starling {

const char* ReleaseVersion() { return STARLING_RELEASE; }
const char* BuildId() { return STARLING_BUILD_ID; }
unsigned ProtocolMin() { return STARLING_PROTOCOL_MIN; }
unsigned ProtocolMax() { return STARLING_PROTOCOL_MAX; }
unsigned DataFormat() { return STARLING_DATA_FORMAT; }

std::string VersionLine(const std::string& program, const std::string& what, unsigned min, unsigned max) {
  const std::string range = min == max ? std::to_string(min) : std::to_string(min) + "-" + std::to_string(max);
  return program + " " + ReleaseVersion() + " (build " + BuildId() + ", " + what + " " + range + ")";
}

}  // namespace starling
