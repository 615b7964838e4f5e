#include "stack_run.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_set>

#include "rollout_engine.h"
#include "sim_report.h"
#include "starling/sim/node_stack.h"
#include "state_commands.h"

namespace starling::sim {
namespace {

using namespace std::chrono_literals;
using node::HookExec;
using node::HookRequest;
using node::HookResult;
using node::NodeStack;
using node::RolloutRecord;
using Json = nlohmann::json;

// What a node's hooks act on; it outlives a crash of the node, as installed
// files do.
struct World {
  std::string installed, running;
};

// Install takes the configured time and fails at the configured rate; the
// other hooks act at once. Health holds while what runs is what is installed.
class WorldHooks final : public HookExec {
 public:
  WorldHooks(Clock& clock, World& world, std::mt19937_64& rng, Duration install, double failure_rate)
      : clock_(clock), world_(world), rng_(rng), install_(install), failure_rate_(failure_rate) {}
  ~WorldHooks() override { *alive_ = false; }
  void Run(HookRequest req, std::function<void(Result<HookResult>)> done) override {
    auto env = [&](const char* k) {
      auto it = req.env.find(k);
      return it == req.env.end() ? std::string() : it->second;
    };
    const std::string kind = env("STARLING_HOOK"), version = env("STARLING_VERSION");
    const Duration took = kind == "install" ? install_ : Duration(0);
    const bool fails = kind == "install" && failure_rate_ > 0 &&
                       std::uniform_real_distribution<double>(0, 1)(rng_) < failure_rate_;
    clock_.Schedule(took, [this, kind, version, fails, took, done = std::move(done), alive = alive_] {
      if (!*alive) return;  // crashed mid-hook: it never finished
      HookResult r;
      r.took = took;
      r.exit_code = Act(kind, version, fails) ? 0 : 1;
      done(r);
    });
  }

 private:
  bool Act(const std::string& kind, const std::string& version, bool fails) {
    if (kind == "install") {
      if (fails) return false;
      world_.installed = version;
    }
    if (kind == "verify") return world_.installed == version;
    if (kind == "remove") world_.installed.clear();
    if (kind == "start") world_.running = world_.installed;
    if (kind == "stop") world_.running.clear();
    if (kind == "health") return !world_.running.empty() && world_.running == world_.installed;
    return true;
  }
  Clock& clock_;
  World& world_;
  std::mt19937_64& rng_;
  Duration install_;
  double failure_rate_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

Json PerNodePerSecond(const Traffic& t, double node_seconds) {
  return {{"messages", static_cast<double>(t.messages) / node_seconds},
          {"datagram_bytes", static_cast<double>(t.bytes) / node_seconds},
          {"stream_bytes", static_cast<double>(t.stream_bytes) / node_seconds},
          {"bytes", static_cast<double>(t.bytes + t.stream_bytes) / node_seconds}};
}

// {"total": {...}, "by_protocol": {"membership": {...}, "log": {...}, ...}},
// each per node per second.
Json LoadJson(const TrafficByProtocol& sent, int nodes, Duration window) {
  const double node_seconds = nodes * Seconds(window);
  Traffic total;
  Json by = Json::object();
  for (const auto& [name, t] : sent) {
    if (name != "membership" && t.messages == 0 && t.stream_bytes == 0) continue;
    by[name] = PerNodePerSecond(t, node_seconds);
    total.messages += t.messages;
    total.bytes += t.bytes;
    total.stream_bytes += t.stream_bytes;
  }
  return {{"total", PerNodePerSecond(total, node_seconds)}, {"by_protocol", by}};
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - (p > 0 ? 1 : 0);
  return v[std::min(k, v.size() - 1)];
}

class Stack {
 public:
  explicit Stack(const StackFlags& f)
      : f_(f), rng_(f.seed ^ 0x9e3779b97f4a7c15ULL), world_(f.nodes), nodes_(f.nodes),
        generation_(f.nodes, 0), views_(f.nodes), c_(f.seed, ProfileConfig(f.profile.c_str())) {
    for (int i = 0; i < f.nodes; ++i) c_.Add();
    c_.OnBoot([this](int i) { Boot(i); });
    c_.OnCrash([this](int i) {
      views_.Forget(i);
      nodes_[i].Down();
    });
    c_.OnEvent([this](int observer, const membership::Event& e) {
      const int member = std::atoi(e.member.name.c_str() + 1);  // names are "n<index>"
      if (member < 0 || member >= f_.nodes) return;
      views_.On(observer, member, e.type);
      if (c_.up(member) && e.type == membership::EventType::kFailed) ++false_failures_, falsely_failed_[member] = 1;
      if (nodes_[observer].core) nodes_[observer].core->OnMemberEvent(e);
    });
    falsely_failed_.assign(f.nodes, 0);
  }
  ~Stack() {
    for (auto& n : nodes_) n.Down();
  }

  Cluster& cluster() { return c_; }
  NodeStack& node(int i) { return nodes_[i]; }
  Views& views() { return views_; }
  uint64_t false_failures() const { return false_failures_; }
  int MembersFalselyFailed() const {
    int n = 0;
    for (int v : falsely_failed_) n += v;
    return n;
  }
  void ClearFalselyFailed() { std::fill(falsely_failed_.begin(), falsely_failed_.end(), 0); }

  std::string Doc(const std::string& version) const {
    Json nodes = Json::object();
    for (int i = 0; i < f_.nodes; ++i) nodes[c_.name(i)] = {{"lifecycle", "commissioned"}, {"roles", {"web"}}};
    const auto hook_s = static_cast<int64_t>(std::ceil(f_.hook_s));
    Json doc = {
        {"roles", {"web"}},
        {"packages",
         {{"web", {{"version", version}, {"roles", {"web"}}, {"hooks", {{"install", "i"}, {"verify", "v"}}}}}}},
        {"services",
         {{"api", {{"package", "web"}, {"roles", {"web"}}, {"hooks", {{"start", "s"}, {"stop", "t"}, {"health", "h"}}}}}}},
        {"nodes", nodes},
        {"policy",
         {{"batch", f_.batch},
          {"min_healthy", std::to_string(static_cast<int64_t>(f_.min_healthy_s * 1000)) + "ms"},
          {"node_deadline", std::to_string(4 * hook_s + 120) + "s"},
          {"progress_deadline", "4h"},
          {"failure_threshold", f_.hook_failure_rate > 0 ? f_.nodes : 0},
          {"auto_revert", false}}}};
    return doc.dump();
  }

  // Applies `doc` at node `writer`; the new revision's id.
  Result<std::string> Apply(int writer, const std::string& doc) {
    auto r = node::StateCommands(*nodes_[writer].replicator).Apply({doc, "starling-sim", ""});
    if (!r.ok()) return r.status();
    return (*r)["revision"].get<std::string>();
  }

  // Changes written to the log by every up node so far.
  uint64_t EntriesWritten() const {
    uint64_t n = 0;
    for (int i = 0; i < f_.nodes; ++i)
      if (c_.up(i) && nodes_[i].replicator) {
        const auto& k = nodes_[i].replicator->counters();
        if (auto it = k.find("entries_written"); it != k.end()) n += it->second;
      }
    return n;
  }

  int Holder() const {
    for (int i = 0; i < f_.nodes; ++i)
      if (c_.up(i) && nodes_[i].lease && nodes_[i].lease->IsHolder()) return i;
    return -1;
  }

  std::optional<RolloutRecord> Record(int i) const {
    if (!nodes_[i].log) return std::nullopt;
    return node::ReadRecord<RolloutRecord>(nodes_[i].log->state(), node::kRolloutKey);
  }

 private:
  void Boot(int i) {
    auto hooks = std::make_unique<WorldHooks>(c_.clock(i), world_[i], rng_, FromSeconds(f_.hook_s),
                                              f_.hook_failure_rate);
    node::AgentConfig acfg;
    acfg.health_every = node::NodeTimingFor(f_.profile).health_every;
    Status s = nodes_[i].Boot(c_, i, ++generation_[i], {}, std::move(hooks), acfg, i == 0, f_.profile);
    if (!s.ok()) {
      std::fprintf(stderr, "starling-sim: node %s did not boot: %s\n", c_.name(i).c_str(), s.ToString().c_str());
      std::exit(2);
    }
  }

  StackFlags f_;
  std::mt19937_64 rng_;
  std::vector<World> world_;
  std::vector<NodeStack> nodes_;
  std::vector<uint32_t> generation_;
  Views views_;
  uint64_t false_failures_ = 0;
  std::vector<int> falsely_failed_;
  Cluster c_;  // last: its teardown calls the crash handler
};

}  // namespace

int RunStack(const StackFlags& f) {
  const double rss_before_kb = ResidentKb("VmRSS:");
  const double heap_before_kb = HeapKb();
  const auto wall_start = std::chrono::steady_clock::now();
  const Duration max_wait = FromSeconds(f.max_s);
  Stack s(f);
  Cluster& c = s.cluster();
  Json out = {{"mode", "stack"}, {"nodes", f.nodes}, {"seed", f.seed}, {"profile", f.profile}};
  bool ok = true;
  // Memory per node after each phase (freed memory returned first): where
  // it goes. Resident memory includes the pages a phase's garbage left
  // partly used; held is what the nodes' objects take from the allocator,
  // less the simulated disk (the log's bytes a real node keeps in RocksDB:
  // given per node as a disk of its own would hold them, and taken off the
  // heap once, as the simulated disks share identical bytes).
  Json phases = Json::object(), held = Json::object(), disk = Json::object();
  auto memory_at = [&](const char* phase) {
    malloc_trim(0);
    const double kb = (ResidentKb("VmRSS:") - rss_before_kb) / f.nodes;
    double disk_kb = 0, stored_kb = 0;
    std::unordered_set<const void*> counted;
    for (int i = 0; i < f.nodes; ++i) {
      disk_kb += static_cast<double>(s.node(i).storage.bytes()) / 1024.0;
      s.node(i).storage.ForEachValue([&](const void* identity, size_t bytes) {
        if (counted.insert(identity).second) stored_kb += static_cast<double>(bytes) / 1024.0;
      });
    }
    phases[phase] = kb;
    disk[phase] = disk_kb / f.nodes;
    held[phase] = (HeapKb() - heap_before_kb - stored_kb) / f.nodes;
    return kb;
  };
  auto fail = [&](const std::string& why) {
    out["error"] = why;
    ok = false;
  };

  // 1. Membership: every node joins node 0 over the spread.
  c.Start(0);
  const Duration spread = FromSeconds(f.join_spread_s);
  for (int i = 1; i < f.nodes; ++i) c.loop().At(c.Now() + spread * i / f.nodes, [&c, i] { c.StartAndJoin(i, 0); });
  const Time t0 = c.Now();
  c.loop().RunFor(spread);
  const bool joined = c.loop().RunUntil([&] { return s.views().Converged(c, f.nodes); }, max_wait, 100ms);
  out["join_converged"] = joined;
  out["join_convergence_s"] = Seconds(c.Now() - t0);
  if (!joined) fail("the membership did not converge");
  memory_at("membership");

  // 2. The first revision, commissioning every node, and its rollout.
  auto rollout = [&](int writer) -> Json {
    const uint64_t written0 = s.EntriesWritten();
    auto req = node::RequestRollout(*s.node(writer).replicator, "", "starling-sim");
    if (!req.ok()) return {{"error", req.status().ToString()}};
    const uint64_t id = (*req)["id"].get<uint64_t>();
    const Time start = c.Now();
    std::optional<RolloutRecord> done;
    const bool settled = c.loop().RunUntil(
        [&] {
          done = s.Record(0);
          return done && done->id == id && done->settled();
        },
        FromSeconds(f.max_s * 10), 1s);
    const double took = Seconds(c.Now() - start);
    Json r = {{"settled", settled}, {"duration_s", took}, {"log_entries_written", s.EntriesWritten() - written0}};
    if (!done) return r;
    const double ideal = static_cast<double>(done->batches) * (f.hook_s + f.min_healthy_s);
    r["state"] = done->state;
    r["batches"] = done->batches;
    r["failed_nodes"] = done->failed.size();
    r["ideal_s"] = ideal;
    r["duration_over_ideal"] = ideal > 0 ? took / ideal : 0.0;
    return r;
  };
  auto quiet = [&] {
    return c.loop().RunUntil(
        [&] {
          for (int i = 0; i < c.size(); ++i)
            if (c.up(i) && c.node(i).counters().at("broadcast_queue_depth") != 0) return false;
          return true;
        },
        max_wait, 1s);
  };
  if (ok) {
    auto r = s.Apply(0, s.Doc("1"));
    if (!r.ok()) fail("applying the first revision: " + r.status().ToString());
    c.loop().RunFor(5s);
    memory_at("first_revision");
  }
  if (ok) {
    out["first_rollout"] = rollout(0);
    if (!out["first_rollout"].value("settled", false)) fail("the first rollout did not settle");
  }

  // 3. Quiet load, every protocol, once the rollout's news has settled.
  if (ok) {
    out["quiet_before_window"] = quiet();
    c.loop().RunFor(10s);
    out["memory_kb_per_node"] = memory_at("first_rollout");
    const Duration window = FromSeconds(f.window_s);
    const auto before = SentByProtocol(c);
    const uint64_t f0 = s.false_failures();
    c.loop().RunFor(window);
    out["quiet_load"] = LoadJson(Minus(SentByProtocol(c), before), f.nodes, window);
    out["quiet_load"]["window_s"] = f.window_s;
    out["false_failures_while_quiet"] = s.false_failures() - f0;
  }

  // 4. Loss: per-node load and live members declared failed.
  Json lossy = Json::array();
  for (double p : ok ? f.loss_levels : std::vector<double>{}) {
    c.SetLoss(p);
    s.ClearFalselyFailed();
    const uint64_t f0 = s.false_failures();
    const Duration window = FromSeconds(f.loss_window_s);
    const auto before = SentByProtocol(c);
    c.loop().RunFor(window);
    Json w = {{"loss", p},
              {"false_failure_events", s.false_failures() - f0},
              {"members_falsely_failed", s.MembersFalselyFailed()},
              {"load", LoadJson(Minus(SentByProtocol(c), before), f.nodes, window)}};
    lossy.push_back(w);
    c.SetLoss(0);
    c.loop().RunUntil([&] { return s.views().Converged(c, f.nodes); }, max_wait, 1s);
  }
  out["lossy_windows"] = lossy;

  // 5. A desired-state change at a node other than the holder: when each node has it.
  if (ok) {
    const int writer = f.nodes / 3;
    auto rev = s.Apply(writer, s.Doc("2"));
    if (!rev.ok()) {
      fail("applying the second revision: " + rev.status().ToString());
    } else {
      const Time start = c.Now();
      std::vector<double> at(f.nodes, -1);
      int reached = 0;
      c.loop().RunUntil(
          [&] {
            for (int i = 0; i < f.nodes; ++i) {
              if (at[i] >= 0 || !s.node(i).log) continue;
              if (s.node(i).log->Current().id == *rev) at[i] = Seconds(c.Now() - start), ++reached;
            }
            return reached == f.nodes;
          },
          max_wait, 20ms);
      std::vector<double> got;
      for (double t : at)
        if (t >= 0) got.push_back(t);
      out["change"] = {{"reached", reached},
                       {"of", f.nodes},
                       {"median_s", Percentile(got, 0.5)},
                       {"p99_s", Percentile(got, 0.99)},
                       {"max_s", Percentile(got, 1.0)}};
      if (reached != f.nodes) fail("the change did not reach every node");
    }
  }

  // 6. A rollout of that change across every commissioned node.
  if (ok) {
    out["rollout"] = rollout(f.nodes / 2);
    if (!out["rollout"].value("settled", false)) fail("the rollout did not settle");
  }

  // 7. The holder crashes: how long until another node holds the lease.
  if (ok) {
    c.loop().RunUntil([&] { return s.Holder() >= 0; }, max_wait, 100ms);
    const int holder = s.Holder();
    if (holder < 0) {
      fail("no node holds the lease");
    } else {
      c.Crash(holder);
      const Time start = c.Now();
      const bool taken = c.loop().RunUntil([&] { return s.Holder() >= 0; }, max_wait, 50ms);
      out["lease_failover"] = {{"crashed_holder", c.name(holder)},
                               {"new_holder", taken ? c.name(s.Holder()) : ""},
                               {"seconds", Seconds(c.Now() - start)}};
      if (!taken) fail("no node took the lease after its holder crashed");
    }
  }

  memory_at("end");
  out["memory_kb_per_node_after"] = phases;
  out["held_kb_per_node_after"] = held;
  out["simulated_disk_kb_per_node_after"] = disk;
  out["peak_memory_kb_per_node"] = (ResidentKb("VmHWM:") - rss_before_kb) / f.nodes;
  out["events_run"] = c.loop().events_run();
  out["virtual_seconds"] = Seconds(c.Now());
  out["wall_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  out["ok"] = ok;
  if (f.format == "json") {
    std::cout << out.dump(2) << "\n";
  } else {
    for (auto& [k, v] : out.items()) std::cout << k << ": " << v.dump() << "\n";
  }
  return ok ? 0 : 1;
}

}  // namespace starling::sim
