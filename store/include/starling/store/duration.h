// Durations as operators write them: in documents (policy deadlines, service start deadlines) and on the
// daemon's command line.
#pragma once

#include <chrono>
#include <string_view>

#include "starling/status.h"

namespace starling::store {

// "1h30m", "10s", "250ms" -> microseconds: units h, m, s, ms, strictly decreasing.
Result<std::chrono::microseconds> ParseDuration(std::string_view text);

}  // namespace starling::store
