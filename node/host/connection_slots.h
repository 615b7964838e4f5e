// Admission for one listener (HTTP, the gossip TCP port, the API socket):
// at most `cap` connections open. A newcomer past the cap closes the open
// connection that has waited longest for its request (an idle or half-sent
// client, "evicted"), so a health check, a join or a CLI call gets in while
// hostile clients hold the slots; when every open connection is busy the
// newcomer is refused ("full"). One source (a peer address, a local user)
// holds at most `per_source` of them: a newcomer from a source at its share
// closes that source's own longest-waiting connection, or is refused, so one
// host cannot take every slot from the others. Loopback and root are not
// counted as sources: on one machine every peer is 127.0.0.1. Every refusal
// and timeout is counted by reason and reported in one log line per 10 s at
// most.
//
// Admit, Waiting and Count run on the listener's thread; Release may run on
// any thread, and open() and refused() are read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace starling::node {

class ConnectionSlots {
 public:
  // Reasons counted: "evicted", "full", "idle" (no request in time),
  // "timeout" (a request begun, not finished in time), "write_timeout",
  // "too_large", "malformed".
  static const std::vector<std::string>& Reasons();

  ConnectionSlots(std::string listener, size_t cap, size_t per_source);

  // A slot for a new connection from `source` (empty: not counted as one),
  // or 0 when refused. `close` is how the connection is closed when evicted
  // (on the listener's thread).
  uint64_t Admit(std::function<void()> close, const std::string& source = "");
  // Whether connection `id` is waiting for a request (evictable) now.
  void Waiting(uint64_t id, bool waiting);
  // The connection is gone (any thread).
  void Release(uint64_t id);
  void Count(const std::string& reason);
  // Closes every open connection (the listener is stopping).
  void CloseAll();

  const std::string& listener() const { return listener_; }
  size_t open() const { return open_.load(); }
  std::map<std::string, uint64_t> refused() const;

 private:
  struct Slot {
    bool waiting = true;
    std::chrono::steady_clock::time_point since;
    std::function<void()> close;
    std::string source;
  };
  const std::string listener_;
  const size_t cap_, per_source_;
  mutable std::mutex mu_;  // Release may come from another thread
  std::map<uint64_t, Slot> slots_;
  uint64_t next_id_ = 1;
  std::atomic<size_t> open_{0};
  std::map<std::string, std::atomic<uint64_t>> refused_;  // fixed keys: Reasons()
  uint64_t unreported_ = 0;
  std::chrono::steady_clock::time_point next_report_{};
};

}  // namespace starling::node
