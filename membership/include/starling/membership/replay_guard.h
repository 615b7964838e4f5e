// Refuses a sealed frame seen before, or sealed too far from this node's
// clock: what stops a frame captured off the wire (a `keys use`, a leave, a
// ping) from being resent later by someone who holds no key.
//
// A frame is accepted once: its (time, id) is remembered until its time falls
// out of the window, after which the window check alone refuses it. The
// memory is capped; past the cap the oldest entries go and the floor rises to
// their time, so that nothing at or before the floor is accepted again: under
// a flood of authentic frames the window narrows, it never opens.
//
// What it does not cover: a daemon restarted within the window has forgotten
// what it saw, so a frame captured just before the restart can be accepted
// once more (SECURITY.md).
#pragma once

#include <cstdint>
#include <set>
#include <utility>

#include "starling/env.h"
#include "starling/membership/keyring.h"

namespace starling::membership {

class ReplayGuard {
 public:
  enum class Verdict { kFresh, kReplayed, kOutOfWindow };

  explicit ReplayGuard(Duration window = std::chrono::seconds(60), size_t max_entries = 32768)
      : window_(window.count()), max_entries_(max_entries) {}

  // Records the frame when fresh. `now_micros` is this node's wall clock.
  Verdict Check(int64_t now_micros, int64_t sent_micros, const FrameId& id) {
    while (!seen_.empty() && seen_.begin()->first < now_micros - window_) Forget();
    if (sent_micros < now_micros - window_ || sent_micros > now_micros + window_) return Verdict::kOutOfWindow;
    if (has_floor_ && sent_micros <= floor_) return Verdict::kReplayed;
    if (!seen_.emplace(sent_micros, id).second) return Verdict::kReplayed;
    while (seen_.size() > max_entries_) Forget();
    return Verdict::kFresh;
  }

  Duration window() const { return Duration(window_); }
  size_t size() const { return seen_.size(); }

 private:
  void Forget() {
    floor_ = has_floor_ ? std::max(floor_, seen_.begin()->first) : seen_.begin()->first;
    has_floor_ = true;
    seen_.erase(seen_.begin());
  }

  int64_t window_;
  size_t max_entries_;
  std::set<std::pair<int64_t, FrameId>> seen_;
  int64_t floor_ = 0;
  bool has_floor_ = false;
};

}  // namespace starling::membership
