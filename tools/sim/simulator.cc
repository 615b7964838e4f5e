#include "starling/sim/simulator.h"

#include <algorithm>

namespace starling::sim {

using membership::Memberlist;
using membership::MemberStatus;

// ---- EventLoop -------------------------------------------------------------

uint64_t EventLoop::At(Time when, std::function<void()> fn) {
  if (when < now_) when = now_;
  uint64_t id = next_id_++;
  heap_.push(Item{when, id});
  handlers_.emplace(id, std::move(fn));
  return id;
}

bool EventLoop::Step() {
  while (!heap_.empty()) {
    Item item = heap_.top();
    heap_.pop();
    auto it = handlers_.find(item.id);
    if (it == handlers_.end()) continue;  // cancelled
    auto fn = std::move(it->second);
    handlers_.erase(it);
    now_ = item.when;
    ++events_run_;
    fn();
    return true;
  }
  return false;
}

void EventLoop::RunFor(Duration d) {
  const Time end = now_ + d;
  while (!heap_.empty()) {
    // Skip cancelled heads so that their times do not stop the loop early.
    while (!heap_.empty() && !handlers_.count(heap_.top().id)) heap_.pop();
    if (heap_.empty() || heap_.top().when > end) break;
    Step();
  }
  now_ = end;
}

bool EventLoop::RunUntil(const std::function<bool()>& done, Duration timeout, Duration every) {
  const Time end = now_ + timeout;
  while (now_ < end) {
    if (done()) return true;
    RunFor(std::min(every, end - now_));
  }
  return done();
}

// ---- per-node seams ---------------------------------------------------------

struct Cluster::Node {
  std::string name, addr;
  membership::Config config;
  bool up = false;
  uint32_t generation = 0;  // persisted across crashes, like the daemon's data dir
  Duration slow{0};
  Duration skew{0};  // wall-clock offset
  Drift drift;       // monotonic clock rate
  int group = 0;
  std::vector<membership::MemberView> known;  // "persisted" member list
  std::unique_ptr<NodeClock> clock;
  std::unique_ptr<NodeTransport> transport;
  std::unique_ptr<SeededRandom> random;
  std::unique_ptr<Memberlist> list;
};

class Cluster::NodeClock final : public Clock {
 public:
  NodeClock(EventLoop& loop, const Duration& skew, const Drift& drift) : loop_(loop), skew_(skew), drift_(drift) {}
  ~NodeClock() override {
    for (auto id : ids_) loop_.Cancel(id);
  }
  // The node's monotonic clock runs at drift_.rate times true time.
  Time Now() const override {
    const auto since = static_cast<double>((loop_.Now() - drift_.true_base).count());
    return drift_.local_base + Duration(static_cast<int64_t>(since * drift_.rate));
  }
  // Virtual time starts at a fixed date so that wall readings look real;
  // each node's wall clock is off by its own skew.
  int64_t WallMicros() const override { return kEpochMicros + (loop_.Now() + skew_).count(); }
  static constexpr int64_t kEpochMicros = 1'790'000'000'000'000;
  TimerId Schedule(Duration after, std::function<void()> fn) override {
    auto holder = std::make_shared<uint64_t>(0);
    const auto true_after = Duration(static_cast<int64_t>(static_cast<double>(after.count()) / drift_.rate + 0.5));
    uint64_t id = loop_.At(loop_.Now() + true_after, [this, holder, fn = std::move(fn)] {
      ids_.erase(*holder);
      fn();
    });
    *holder = id;
    ids_.insert(id);
    return id;
  }
  void Cancel(TimerId id) override {
    if (ids_.erase(id)) loop_.Cancel(id);
  }

 private:
  EventLoop& loop_;
  const Duration& skew_;
  const Drift& drift_;
  std::set<uint64_t> ids_;
};

class Cluster::NodeTransport final : public Transport {
 public:
  NodeTransport(Cluster& c, int i) : c_(c), i_(i) {}
  void SendPacket(const std::string& addr, Bytes packet) override { c_.Deliver(i_, addr, std::move(packet)); }
  void SendStream(const std::string& addr, Bytes request, Duration timeout, StreamDone done) override {
    c_.Stream(i_, addr, std::move(request), timeout, std::move(done));
  }

 private:
  Cluster& c_;
  int i_;
};

// ---- Cluster ---------------------------------------------------------------

bool Cluster::up(int i) const { return nodes_[i]->up; }
const std::string& Cluster::name(int i) const { return nodes_[i]->name; }
const std::string& Cluster::addr(int i) const { return nodes_[i]->addr; }
membership::Memberlist& Cluster::node(int i) { return *nodes_[i]->list; }
Clock& Cluster::clock(int i) { return *nodes_[i]->clock; }
Random& Cluster::random(int i) { return *nodes_[i]->random; }

Cluster::Cluster(uint64_t seed, membership::Config base, NetworkOptions net)
    : seed_(seed), base_(std::move(base)), net_(net), rng_(seed) {}

Cluster::~Cluster() {
  // Memberlists cancel their timers through their clocks: destroy them first.
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i]->up && on_crash_) on_crash_(static_cast<int>(i));
  for (auto& n : nodes_) n->list.reset();
}

int Cluster::Add(std::optional<membership::Config> config) {
  int i = static_cast<int>(nodes_.size());
  auto n = std::make_unique<Node>();
  n->config = config ? *config : base_;
  n->name = n->config.name.empty() ? "n" + std::to_string(i) : n->config.name;
  n->addr = "10." + std::to_string((i >> 16) & 255) + "." + std::to_string((i >> 8) & 255) + "." +
            std::to_string(i & 255) + ":7946";
  by_addr_[n->addr] = i;
  nodes_.push_back(std::move(n));
  return i;
}

void Cluster::Boot(int i) {
  Node& n = *nodes_[i];
  n.up = true;
  ++n.generation;
  // A booted node's clock starts from true time at its own rate.
  n.drift.true_base = loop_.Now();
  n.drift.local_base = loop_.Now();
  n.clock = std::make_unique<NodeClock>(loop_, n.skew, n.drift);
  n.transport = std::make_unique<NodeTransport>(*this, i);
  n.random = std::make_unique<SeededRandom>(rng_.Next());
  membership::Config cfg = n.config;
  cfg.name = n.name;
  cfg.advertise_addr = n.addr;
  cfg.initial_incarnation = static_cast<uint64_t>(n.generation) << 32;
  n.list = std::make_unique<Memberlist>(cfg, *n.clock, *n.transport, *n.random,
                                        [this, i](const membership::Event& e) {
                                          if (on_event_) on_event_(i, e);
                                        });
  n.list->Start();
  if (on_boot_) on_boot_(i);
}

void Cluster::Start(int i) { Boot(i); }

void Cluster::StartAndJoin(int i, int seed) {
  Boot(i);
  Join(i, {seed});
}

void Cluster::Join(int i, const std::vector<int>& seeds) {
  std::vector<std::string> addrs;
  for (int s : seeds) addrs.push_back(nodes_[s]->addr);
  nodes_[i]->list->JoinWithRetry(addrs, 0, [](Result<int>) {});
}

void Cluster::Crash(int i) {
  Node& n = *nodes_[i];
  if (!n.up) return;
  n.known.clear();
  for (auto& m : n.list->Members())
    if (m.name != n.name) n.known.push_back(m);
  n.up = false;
  // What runs on top of the memberlist goes first: it holds timers on the
  // node's clock and handlers inside the memberlist.
  if (on_crash_) on_crash_(i);
  n.list.reset();
  n.clock.reset();  // drops the node's outstanding timers
  n.transport.reset();
}

void Cluster::Restart(int i, int seed) {
  Node& n = *nodes_[i];
  if (n.up) return;
  Boot(i);
  if (seed >= 0) {
    Join(i, {seed});
    return;
  }
  n.list->AddKnownMembers(n.known);
  std::vector<std::string> addrs;
  for (auto& m : n.known) addrs.push_back(m.addr);
  if (!addrs.empty()) n.list->JoinWithRetry(addrs, 0, [](Result<int>) {});
}

void Cluster::Leave(int i) {
  Node& n = *nodes_[i];
  if (!n.up) return;
  n.list->Leave([this, i] {
    // The daemon exits once its leave is out; model that.
    loop_.At(loop_.Now(), [this, i] { Crash(i); });
  });
}

void Cluster::Partition(const std::vector<std::vector<int>>& groups) {
  for (auto& n : nodes_) n->group = -1;
  int g = 0;
  for (const auto& group : groups) {
    for (int i : group) nodes_[i]->group = g;
    ++g;
  }
  // Nodes named in no group form a group of their own.
  for (auto& n : nodes_)
    if (n->group == -1) n->group = g;
}

void Cluster::Heal() {
  for (auto& n : nodes_) n->group = 0;
}

void Cluster::SetSlow(int i, Duration extra) { nodes_[i]->slow = extra; }
membership::Config ProfileConfig(const char* profile) {
  membership::Config cfg;
  cfg.timing = *membership::ProfileTiming(profile);
  return cfg;
}

bool Cluster::FormAll(Duration spread, Duration timeout) {
  Start(0);
  const int n = size();
  for (int i = 1; i < n; ++i) loop_.At(loop_.Now() + spread * i / n, [this, i] { StartAndJoin(i, 0); });
  loop_.RunFor(spread);
  return loop_.RunUntil([&] { return Converged(); }, timeout);
}

void Cluster::SetClockSkew(int i, Duration skew) { nodes_[i]->skew = skew; }

void Cluster::SetClockRate(int i, double rate) {
  Node& n = *nodes_[i];
  // Keep the node's clock continuous: rebase at the current instant.
  if (n.clock) n.drift.local_base = n.clock->Now();
  n.drift.true_base = loop_.Now();
  n.drift.rate = rate;
}

bool Cluster::Connected(int a, int b) const { return Reachable(a, b); }

bool Cluster::Reachable(int a, int b) const { return nodes_[a]->group == nodes_[b]->group; }

Duration Cluster::Delay(int from, int to) {
  auto span = static_cast<uint64_t>((net_.max_delay - net_.min_delay).count());
  Duration d = latency_ ? latency_(from, to) : net_.min_delay + Duration(span ? rng_.Uniform(span + 1) : 0);
  for (int i : {from, to}) {
    auto slow = static_cast<uint64_t>(nodes_[i]->slow.count());
    if (slow) d += Duration(rng_.Uniform(slow + 1));
  }
  return d;
}

void Cluster::Deliver(int from, const std::string& to_addr, Bytes bytes) {
  ++stats_.packets_sent;
  stats_.bytes_sent += bytes.size();
  auto it = by_addr_.find(to_addr);
  if (it == by_addr_.end()) {
    ++stats_.packets_dropped;
    return;
  }
  int to = it->second;
  if (on_wire_) on_wire_(Wire::kPacket, from, to, bytes);
  if (!Reachable(from, to) || (net_.loss > 0 && static_cast<double>(rng_.Next() >> 11) * 0x1.0p-53 < net_.loss)) {
    ++stats_.packets_dropped;
    return;
  }
  uint32_t gen = nodes_[to]->generation;
  std::string src = nodes_[from]->addr;
  loop_.At(loop_.Now() + Delay(from, to), [this, to, gen, src, bytes = std::move(bytes)] {
    Node& n = *nodes_[to];
    if (!n.up || n.generation != gen) return;
    ++stats_.packets_delivered;
    n.list->HandlePacket(src, bytes);
  });
}

void Cluster::Stream(int from, const std::string& to_addr, Bytes req, Duration timeout,
                     starling::Transport::StreamDone done) {
  ++stats_.streams;
  stats_.stream_bytes += req.size();
  const uint32_t from_gen = nodes_[from]->generation;
  auto fail_after = [&](Duration d, std::string why) {
    loop_.At(loop_.Now() + std::min(d, timeout), [this, from, from_gen, done, why] {
      if (nodes_[from]->up && nodes_[from]->generation == from_gen) done(Status::Unavailable(why));
    });
  };
  auto it = by_addr_.find(to_addr);
  if (it == by_addr_.end()) {
    fail_after(net_.min_delay, "no route to " + to_addr);
    return;
  }
  int to = it->second;
  if (on_wire_) on_wire_(Wire::kRequest, from, to, req);
  if (!Reachable(from, to)) {
    fail_after(net_.stream_unreachable_after, "timed out connecting to " + to_addr);
    return;
  }
  const Duration there = Delay(from, to);
  const Duration back = Delay(to, from);
  std::string src = nodes_[from]->addr;
  loop_.At(loop_.Now() + there, [this, from, to, from_gen, src, back, timeout, there, to_addr, done,
                                 req = std::move(req)] {
    Node& t = *nodes_[to];
    // The reply may come later than now: a handler can answer after work
    // it hands off. The time it takes counts against the timeout.
    const Time arrived = loop_.Now();
    // A reply that never comes (the handler's node went away first) still
    // ends the exchange at the timeout, as a dead TCP peer would.
    auto answered = std::make_shared<bool>(false);
    loop_.At(arrived + (timeout - there), [this, from, from_gen, done, to_addr, answered] {
      if (*answered) return;
      *answered = true;
      if (nodes_[from]->up && nodes_[from]->generation == from_gen)
        done(Status::Unavailable("timed out talking to " + to_addr));
    });
    auto deliver = [this, from, to, from_gen, back, timeout, there, to_addr, done, arrived,
                    answered](Bytes reply) {
      if (*answered) return;
      *answered = true;
      stats_.stream_bytes += reply.size();
      if (on_wire_ && !reply.empty()) on_wire_(Wire::kReply, to, from, reply);
      const bool ok = !reply.empty() && nodes_[to]->up && Reachable(from, to);
      const Duration spent = there + (loop_.Now() - arrived);
      const Duration wait = ok ? back : std::min(back, timeout);
      if (spent + wait > timeout) {
        const Duration left = timeout > spent ? timeout - spent : Duration::zero();
        loop_.At(loop_.Now() + left, [this, from, from_gen, done, to_addr] {
          if (nodes_[from]->up && nodes_[from]->generation == from_gen)
            done(Status::Unavailable("timed out talking to " + to_addr));
        });
        return;
      }
      loop_.At(loop_.Now() + wait, [this, from, from_gen, done, ok, to_addr, reply = std::move(reply)]() mutable {
        if (!nodes_[from]->up || nodes_[from]->generation != from_gen) return;
        if (ok) {
          done(std::move(reply));
        } else {
          done(Status::Unavailable("connection to " + to_addr + " refused or closed"));
        }
      });
    };
    if (t.up && Reachable(from, to)) {
      t.list->HandleStream(src, req, std::move(deliver));
    } else {
      deliver({});
    }
  });
}

bool Cluster::Converged() const {
  size_t up_count = 0;
  for (const auto& n : nodes_)
    if (n->up) ++up_count;
  for (const auto& n : nodes_) {
    if (!n->up) continue;
    auto c = n->list->Counts();
    if (c.alive != up_count || c.suspect != 0) return false;
    for (const auto& m : nodes_) {
      if (!m->up) continue;
      auto s = n->list->StatusOf(m->name);
      if (!s || *s != MemberStatus::kAlive) return false;
    }
  }
  return true;
}

bool Cluster::AllSee(int i, MemberStatus status) const {
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (static_cast<int>(j) == i || !nodes_[j]->up) continue;
    auto s = nodes_[j]->list->StatusOf(nodes_[i]->name);
    if (!s || *s != status) return false;
  }
  return true;
}

}  // namespace starling::sim
