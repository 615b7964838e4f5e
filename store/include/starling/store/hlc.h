// Hybrid logical clock (Kulkarni et al.): physical microseconds plus a
// counter, so stamps follow wall time when clocks agree and still respect
// causality (a stamp is above everything its node has seen) when they do not.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

namespace starling::store {

struct Hlc {
  int64_t wall = 0;  // microseconds since the Unix epoch
  uint32_t logical = 0;
  auto operator<=>(const Hlc&) const = default;
  // "2026-11-22T08:15:57.123456Z+3" (the counter only when non-zero).
  std::string ToString() const;
};

class HybridClock {
 public:
  // A stamp above every stamp issued or observed so far.
  Hlc Now(int64_t wall_micros) {
    if (wall_micros > last_.wall) {
      last_ = Hlc{wall_micros, 0};
    } else {
      ++last_.logical;
    }
    return last_;
  }
  // Remembers a stamp from elsewhere so that later stamps come after it.
  void Observe(const Hlc& h) {
    if (h > last_) last_ = h;
  }
  Hlc last() const { return last_; }

 private:
  Hlc last_;
};

}  // namespace starling::store
