// The three seams through which protocol logic reaches the outside world.
//
// Membership (and later the lease and rollout logic) never reads the OS clock,
// opens a socket or seeds a generator itself: it is handed a Clock, a
// Transport and a Random. The daemon plugs in Asio-backed ones; the simulator
// plugs in virtual time and a simulated network, so the same code runs in both
// and a simulated run replays exactly from its seed.
//
// Threading: every callback (timer, stream completion) is invoked on the one
// protocol thread that also calls into the protocol object. Implementations
// must never call back synchronously from inside the call that registered the
// callback.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "starling/status.h"

namespace starling {

using Duration = std::chrono::microseconds;
// Monotonic time since an arbitrary origin fixed by the clock.
using Time = std::chrono::microseconds;
using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

class Clock {
 public:
  using TimerId = uint64_t;
  virtual ~Clock() = default;
  virtual Time Now() const = 0;
  // Wall-clock time, microseconds since the Unix epoch. May jump and differ
  // between nodes; only hybrid logical clocks read it, never timeouts.
  virtual int64_t WallMicros() const = 0;
  // Runs `fn` once, `after` from now. Returns an id for Cancel().
  virtual TimerId Schedule(Duration after, std::function<void()> fn) = 0;
  // Cancelling an id that already fired or was cancelled is a no-op.
  virtual void Cancel(TimerId id) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Best effort: the datagram may be lost, delayed or reordered. `addr` is "host:port".
  virtual void SendPacket(const std::string& addr, Bytes packet) = 0;
  // One request/reply exchange over a reliable stream. `done` runs exactly
  // once, later, with the reply or a Status (kUnavailable for refused,
  // unreachable or timed out after `timeout`).
  using StreamDone = std::function<void(Result<Bytes>)>;
  virtual void SendStream(const std::string& addr, Bytes request, Duration timeout, StreamDone done) = 0;
};

class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t Next() = 0;
  // Uniform in [0, n); n > 0.
  uint64_t Uniform(uint64_t n) { return Next() % n; }
};

// SplitMix64: small, fast and good enough for protocol choices. Seeded
// explicitly so that a run can be replayed.
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}
  uint64_t Next() override {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

}  // namespace starling
