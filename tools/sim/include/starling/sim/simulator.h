// Deterministic simulation of a Starling cluster in one process.
//
// A heap of timed events and a virtual clock that jumps to the next deadline
// (after tarantool's swim test harness). Every simulated node runs the real
// Memberlist over a simulated network with per-packet loss, delay, partitions,
// crashes, restarts and slow nodes. All randomness, the network's and every
// node's, derives from one seed, so the same seed gives the same run: print it
// on failure and replay.
//
// Not thread-safe; the daemon never links this library.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "starling/env.h"
#include "starling/membership/memberlist.h"

namespace starling::sim {

// The seed a test runs with: STARLING_SEED when set (to rerun one), else `fallback`.
inline uint64_t SeedOr(uint64_t fallback) {
  if (const char* s = std::getenv("STARLING_SEED")) return std::strtoull(s, nullptr, 10);
  return fallback;
}

// The event loop and virtual clock.
class EventLoop {
 public:
  Time Now() const { return now_; }
  uint64_t At(Time when, std::function<void()> fn);
  void Cancel(uint64_t id) { handlers_.erase(id); }
  // Runs the next event; false when none is left.
  bool Step();
  // Runs every event due up to now + d, then sets the clock to now + d.
  void RunFor(Duration d);
  // Runs until `done()` holds (checked every `every` of virtual time) or
  // `timeout` passes. Returns whether it held.
  bool RunUntil(const std::function<bool()>& done, Duration timeout, Duration every = std::chrono::milliseconds(100));
  size_t pending() const { return handlers_.size(); }
  uint64_t events_run() const { return events_run_; }

 private:
  struct Item {
    Time when;
    uint64_t id;
    bool operator>(const Item& o) const { return when != o.when ? when > o.when : id > o.id; }
  };
  Time now_{0};
  uint64_t next_id_ = 1;
  uint64_t events_run_ = 0;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> heap_;
  std::unordered_map<uint64_t, std::function<void()>> handlers_;
};

struct NetworkOptions {
  double loss = 0.0;  // probability each datagram is dropped
  Duration min_delay = std::chrono::milliseconds(1);
  Duration max_delay = std::chrono::milliseconds(5);
  // A connect to a partitioned-off address fails after this (a refused
  // connect to a crashed node fails after one delay).
  Duration stream_unreachable_after = std::chrono::seconds(2);
};

struct NetStats {
  uint64_t packets_sent = 0, packets_delivered = 0, packets_dropped = 0;
  uint64_t bytes_sent = 0;
  uint64_t streams = 0, stream_bytes = 0;
};

// A node's monotonic clock: local = local_base + (true - true_base) * rate.
struct Drift {
  double rate = 1.0;
  Time true_base{0};
  Time local_base{0};
};

// A Config with a named membership timing profile ("lan", "wan", "local").
membership::Config ProfileConfig(const char* profile);

class Cluster {
 public:
  using EventFn = std::function<void(int node, const membership::Event&)>;

  // `base` is copied for every node; name, advertise address and the starting
  // incarnation are set per node.
  Cluster(uint64_t seed, membership::Config base, NetworkOptions net = {});
  ~Cluster();

  // Adds a node (not yet started). Returns its index; names are "n<index>".
  int Add(std::optional<membership::Config> config = std::nullopt);
  void Start(int i);
  // Starts node i and joins it through `seed` (with retry).
  void StartAndJoin(int i, int seed);
  void Join(int i, const std::vector<int>& seeds);
  // kill -9: the node stops instantly and forgets its in-memory state.
  void Crash(int i);
  // Starts a crashed node again with a new incarnation generation (as the
  // daemon does from its data dir), rejoining through `seed` or, when
  // seed < 0, through the members it knew before the crash.
  void Restart(int i, int seed = -1);
  void Leave(int i);
  // Adds nothing: starts node 0, then every other node joining it, spread
  // over `spread`; true once the membership converged within `timeout`.
  bool FormAll(Duration spread, Duration timeout = std::chrono::seconds(120));

  // Network faults.
  void SetLoss(double p) { net_.loss = p; }
  void SetDelay(Duration min, Duration max) {
    net_.min_delay = min;
    net_.max_delay = max;
  }
  // A one-way delay per pair (a latency matrix) instead of the uniform
  // [min, max]; SetSlow still adds to it. Empty: back to the uniform delay.
  void SetLatency(std::function<Duration(int from, int to)> fn) { latency_ = std::move(fn); }
  // Nodes in different groups cannot reach each other.
  void Partition(const std::vector<std::vector<int>>& groups);
  void Heal();
  // Each message to or from node i waits an extra uniform [0, extra].
  void SetSlow(int i, Duration extra);
  // Node i's wall clock (what hybrid logical clocks read) runs `skew` ahead.
  void SetClockSkew(int i, Duration skew);
  // Node i's monotonic clock (timers, Now()) runs at `rate` times true time
  // (1.01 = 1 % fast). Timers already scheduled keep their true deadlines.
  void SetClockRate(int i, double rate);
  // Whether a and b are on the same side of every partition.
  bool Connected(int a, int b) const;

  EventLoop& loop() { return loop_; }
  Time Now() const { return loop_.Now(); }
  int size() const { return static_cast<int>(nodes_.size()); }
  bool up(int i) const;
  const std::string& name(int i) const;
  const std::string& addr(int i) const;
  membership::Memberlist& node(int i);
  // The up node's own seams, for layers that run on top of its memberlist.
  Clock& clock(int i);
  Random& random(int i);
  // Called right after node i boots (its memberlist started) and right
  // before it goes down (crash, leave or cluster teardown): attach and
  // detach what runs on top of the memberlist.
  void OnBoot(std::function<void(int)> fn) { on_boot_ = std::move(fn); }
  void OnCrash(std::function<void(int)> fn) { on_crash_ = std::move(fn); }
  const NetStats& net_stats() const { return stats_; }
  uint64_t seed() const { return seed_; }
  void OnEvent(EventFn fn) { on_event_ = std::move(fn); }
  // Sees every datagram, stream request and stream reply as it leaves its
  // sender (lost or not): what an eavesdropper on the network would record.
  enum class Wire { kPacket, kRequest, kReply };
  using WireFn = std::function<void(Wire kind, int from, int to, const Bytes& bytes)>;
  void OnWire(WireFn fn) { on_wire_ = std::move(fn); }

  // Every up node sees exactly the up nodes, all alive.
  bool Converged() const;
  // Every up node other than i sees node i with `status`.
  bool AllSee(int i, membership::MemberStatus status) const;

 private:
  struct Node;
  class NodeClock;
  class NodeTransport;
  void Boot(int i);
  void Deliver(int from, const std::string& to_addr, Bytes bytes);
  void Stream(int from, const std::string& to_addr, Bytes req, Duration timeout, starling::Transport::StreamDone done);
  bool Reachable(int a, int b) const;
  Duration Delay(int from, int to);

  uint64_t seed_;
  membership::Config base_;
  NetworkOptions net_;
  EventLoop loop_;
  SeededRandom rng_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::unordered_map<std::string, int> by_addr_;
  NetStats stats_;
  EventFn on_event_;
  WireFn on_wire_;
  std::function<Duration(int, int)> latency_;
  std::function<void(int)> on_boot_, on_crash_;
};

}  // namespace starling::sim
