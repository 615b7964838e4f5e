#include "starling/store/duration.h"

#include <array>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "document_internal.h"

namespace starling::store {

using internal::IsDigit;
using internal::Quoted;

namespace {

struct Unit {
  std::string_view name;
  int64_t micros;
};

// In the order a duration must use them: each unit may only be followed by a later one.
constexpr std::array<Unit, 6> kUnits = {{{"d", int64_t{86400} * 1000000},
                                         {"h", int64_t{3600} * 1000000},
                                         {"m", int64_t{60} * 1000000},
                                         {"s", 1000000},
                                         {"ms", 1000},
                                         {"us", 1}}};

constexpr std::string_view kHint =
    "(expected a number and a unit, largest first: 1d, 12h, 30m, 10s, 250ms, 500us; e.g. 1h30m)";

// The index in kUnits of the unit `rest` starts with, or kUnits.size(). The longest name wins, so that "5ms"
// is milliseconds and not minutes followed by a stray "s".
size_t MatchUnit(std::string_view rest) {
  size_t best = kUnits.size();
  for (size_t u = 0; u < kUnits.size(); ++u) {
    if (rest.substr(0, kUnits[u].name.size()) != kUnits[u].name) continue;
    if (best == kUnits.size() || kUnits[u].name.size() > kUnits[best].name.size()) best = u;
  }
  return best;
}

}  // namespace

Result<std::chrono::microseconds> ParseDuration(std::string_view text) {
  auto malformed = [&] {
    return Status::InvalidArgument("malformed duration " + Quoted(text) + " " + std::string(kHint));
  };
  if (text.empty()) return malformed();
  const int64_t max = kMaxDuration.count();
  int64_t total = 0;
  size_t first_allowed = 0;  // units only go down, so each one used rules out itself and all larger ones
  for (size_t i = 0; i < text.size();) {
    size_t digits_end = i;
    while (digits_end < text.size() && IsDigit(text[digits_end])) ++digits_end;
    std::string_view digits = text.substr(i, digits_end - i);
    size_t u = MatchUnit(text.substr(digits_end));
    if (digits.empty() || u == kUnits.size() || u < first_allowed) return malformed();
    first_allowed = u + 1;
    i = digits_end + kUnits[u].name.size();
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || v > static_cast<uint64_t>((max - total) / kUnits[u].micros)) {
      return Status::InvalidArgument(
          "duration " + Quoted(text) + " is too long (at most " +
          std::to_string(std::chrono::floor<std::chrono::days>(kMaxDuration).count()) + "d, ten years)");
    }
    total += static_cast<int64_t>(v) * kUnits[u].micros;
  }
  return std::chrono::microseconds(total);
}

}  // namespace starling::store
