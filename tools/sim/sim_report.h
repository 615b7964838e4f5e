// What both modes of starling-sim measure with: virtual seconds, this
// process's memory, and every node's view of the others kept from the
// memberlists' events (so a convergence check costs O(N), not O(N^2)).
#pragma once

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "starling/sim/simulator.h"

namespace starling::sim {

inline double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

inline Duration FromSeconds(double s) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

// Kilobytes of this process's resident memory: now (VmRSS) or at its peak (VmHWM).
inline double ResidentKb(const char* key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream s(line.substr(std::string(key).size()));
    double kb = 0;
    s >> kb;
    return kb;
  }
  return 0;
}

// Kilobytes the allocator has handed out and not had back: what the nodes
// hold, without the pages a join wave's garbage left partly used.
inline double HeapKb() { return static_cast<double>(mallinfo2().uordblks) / 1024.0; }

// What every node lists, kept up to date from the memberlists' events so
// that checking convergence costs O(N), not O(N^2) lookups.
class Views {
 public:
  explicit Views(int n) : n_(n), status_(static_cast<size_t>(n) * n, kUnknown), alive_(n, 0), suspect_(n, 0) {}

  void On(int observer, int member, membership::EventType type) {
    uint8_t& s = status_[static_cast<size_t>(observer) * n_ + member];
    uint8_t next = s;
    switch (type) {
      case membership::EventType::kJoined:
      case membership::EventType::kAlive: next = kAliveS; break;
      case membership::EventType::kSuspect: next = kSuspectS; break;
      case membership::EventType::kFailed:
      case membership::EventType::kLeft: next = kDown; break;
      case membership::EventType::kReaped: next = kUnknown; break;
      case membership::EventType::kUpdated: break;
    }
    if (next == s) return;
    if (s == kAliveS) --alive_[observer];
    if (s == kSuspectS) --suspect_[observer];
    if (next == kAliveS) ++alive_[observer];
    if (next == kSuspectS) ++suspect_[observer];
    s = next;
  }
  // A crashed node's memberlist is gone: it lists nobody.
  void Forget(int observer) {
    std::fill_n(status_.begin() + static_cast<ptrdiff_t>(observer) * n_, n_, kUnknown);
    alive_[observer] = suspect_[observer] = 0;
  }
  // Every up node lists `up` members alive and none suspect.
  bool Converged(const Cluster& c, int up) const {
    for (int i = 0; i < n_; ++i)
      if (c.up(i) && (alive_[i] != up || suspect_[i] != 0)) return false;
    return true;
  }

 private:
  static constexpr uint8_t kUnknown = 0, kAliveS = 1, kSuspectS = 2, kDown = 3;
  int n_;
  std::vector<uint8_t> status_;
  std::vector<int> alive_, suspect_;
};

// What the up nodes sent, by protocol: "membership" (probes, gossip and
// push-pull) and each user channel by name ("log", "lease", "reports", ...).
struct Traffic {
  uint64_t messages = 0;      // datagram messages (a compound packet carries several)
  uint64_t bytes = 0;         // their bytes
  uint64_t stream_bytes = 0;  // stream requests and replies
};
using TrafficByProtocol = std::map<std::string, Traffic>;
TrafficByProtocol SentByProtocol(Cluster& c);
// b - a, protocol by protocol.
TrafficByProtocol Minus(const TrafficByProtocol& b, const TrafficByProtocol& a);

}  // namespace starling::sim
