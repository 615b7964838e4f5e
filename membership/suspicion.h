// Lifeguard's suspicion timer: it starts at `max` and shrinks toward `min` as
// independent members confirm the suspicion, following memberlist:
//
//   timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))
//
// where c is the number of distinct confirmations so far and k the number
// expected. With k = 0 the timeout is simply `min`.
#pragma once

#include <functional>
#include <set>
#include <string>

#include "starling/env.h"

namespace starling::membership {

class Suspicion {
 public:
  // `from` is the first suspecter, who does not count as a confirmation.
  Suspicion(Clock& clock, const std::string& from, int k, Duration min, Duration max, std::function<void()> on_timeout);
  ~Suspicion();
  Suspicion(const Suspicion&) = delete;
  Suspicion& operator=(const Suspicion&) = delete;

  // Records an independent confirmation; returns true when it was new (and
  // so worth re-gossiping).
  bool Confirm(const std::string& from);
  static Duration Remaining(int n, int k, Duration elapsed, Duration min, Duration max);
  Time deadline() const { return deadline_; }

 private:
  void Arm();
  Clock& clock_;
  int k_;
  Duration min_, max_;
  Time start_;
  Time deadline_{};
  std::set<std::string> confirmations_;
  std::function<void()> on_timeout_;
  Clock::TimerId timer_ = 0;
  bool armed_ = false;
};

}  // namespace starling::membership
