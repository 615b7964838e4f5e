#include "suspicion.h"

#include <algorithm>
#include <cmath>

namespace starling::membership {

Suspicion::Suspicion(Clock& clock, const std::string& from, int k, Duration min, Duration max,
                     std::function<void()> on_timeout)
    : clock_(clock), k_(k), min_(min), max_(k < 1 ? min : max), start_(clock.Now()), on_timeout_(std::move(on_timeout)) {
  confirmations_.insert(from);
  Arm();
}

Suspicion::~Suspicion() {
  if (armed_) clock_.Cancel(timer_);
}

Duration Suspicion::Remaining(int n, int k, Duration elapsed, Duration min, Duration max) {
  using Secs = std::chrono::duration<double>;
  const double frac =
      k < 1 ? 1.0 : std::log(static_cast<double>(n) + 1.0) / std::log(static_cast<double>(k) + 1.0);
  const double raw = Secs(max).count() - frac * (Secs(max).count() - Secs(min).count());
  // Millisecond resolution, as memberlist computes it.
  Duration timeout = std::chrono::milliseconds(static_cast<int64_t>(std::floor(1000.0 * raw)));
  timeout = std::max(timeout, min);
  return timeout - elapsed;
}

void Suspicion::Arm() {
  if (armed_) clock_.Cancel(timer_);
  int n = static_cast<int>(confirmations_.size()) - 1;
  Duration elapsed = clock_.Now() - start_;
  Duration left = Remaining(n, k_, elapsed, min_, max_);
  if (left < Duration(0)) left = Duration(0);
  deadline_ = clock_.Now() + left;
  armed_ = true;
  timer_ = clock_.Schedule(left, [this] {
    armed_ = false;
    // The callback may destroy this object: take the function out first.
    auto fn = on_timeout_;
    fn();
  });
}

bool Suspicion::Confirm(const std::string& from) {
  if (k_ < 1 || static_cast<int>(confirmations_.size()) - 1 >= k_) return false;
  if (!confirmations_.insert(from).second) return false;
  Arm();
  return true;
}

}  // namespace starling::membership
