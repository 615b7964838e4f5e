#include "starling/store/duration.h"

#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "document_internal.h"

namespace starling::store {

using internal::IsDigit;
using internal::Quoted;

namespace {
constexpr std::string_view kDurationHint = "(expected e.g. 250ms, 10s, 5m or 1h30m)";
}  // namespace

Result<std::chrono::microseconds> ParseDuration(std::string_view text) {
  auto malformed = [&] {
    return Status::InvalidArgument("malformed duration " + Quoted(text) + " " + std::string(kDurationHint));
  };
  if (text.empty()) return malformed();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  int64_t total = 0;
  int last_rank = 5;  // units must go strictly down: h (4), m (3), s (2), ms (1)
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && IsDigit(text[i])) ++i;
    if (i == start || i == text.size()) return malformed();
    std::string_view digits = text.substr(start, i - start);
    int rank;
    int64_t unit_us;
    if (text[i] == 'h') {
      rank = 4, unit_us = int64_t{3600} * 1000000, i += 1;
    } else if (text[i] == 'm' && i + 1 < text.size() && text[i + 1] == 's') {
      rank = 1, unit_us = 1000, i += 2;
    } else if (text[i] == 'm') {
      rank = 3, unit_us = int64_t{60} * 1000000, i += 1;
    } else if (text[i] == 's') {
      rank = 2, unit_us = 1000000, i += 1;
    } else {
      return malformed();
    }
    if (rank >= last_rank) return malformed();
    last_rank = rank;
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || v > static_cast<uint64_t>((kMax - total) / unit_us)) {
      return Status::InvalidArgument("duration " + Quoted(text) + " is too long");
    }
    total += static_cast<int64_t>(v) * unit_us;
  }
  return std::chrono::microseconds(total);
}

}  // namespace starling::store
