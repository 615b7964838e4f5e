// Durations as operators write them: in documents (policy deadlines, service start deadlines) and on the
// daemon's command line. One grammar for both, so that a duration that works in one place works in the other.
#pragma once

#include <chrono>
#include <string_view>

#include "starling/status.h"

namespace starling::store {

// Ten years: far beyond any sensible timeout or deadline, and far below where microseconds overflow.
inline constexpr std::chrono::microseconds kMaxDuration = std::chrono::hours(24 * 3650);

// "1d12h", "1h30m", "10s", "1s500ms", "250us", "0s" -> microseconds. A duration is one or more
// <digits><unit> with units d, h, m, s, ms, us, each used at most once and from largest to smallest. Anything
// else (signs, fractions, spaces, other units, a number without a unit) is kInvalidArgument
// "malformed duration '<text>' (...)" listing the units; more than kMaxDuration in all is kInvalidArgument
// "duration '<text>' is too long (...)".
Result<std::chrono::microseconds> ParseDuration(std::string_view text);

}  // namespace starling::store
