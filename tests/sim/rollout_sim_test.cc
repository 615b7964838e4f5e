// Rollouts on virtual time: every node runs the whole stack (log, lease,
// soft state, agent, engine) over the simulated network, and its hooks act
// on a simulated world that survives crashes, as real services do. An
// oracle watching the world checks that the rollouts never take more nodes
// out of service at once than the policy's largest batch, and that every
// rollout ends (succeeded, failed or reverted) once the faults stop.
// Every test prints its seed; rerun one with STARLING_SEED=<seed>.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <random>
#include <set>

#include "node_stack.h"
#include "state_commands.h"

namespace starling::node {
namespace {

using namespace std::chrono_literals;
using sim::Cluster;
using store::Json;

constexpr int kNodes = 7;
constexpr int kVoters = 5;

using sim::SeedOr;



// What the hooks act on; kept across crashes, like files and processes.
struct World {
  std::string installed, running;
  std::set<std::string> bad;  // versions whose health check fails here
  bool out = false;           // taken out of service by a rollout's stop, not yet healthy
};

class Oracle {
 public:
  explicit Oracle(size_t bound) : bound_(bound) {}
  void Check(const std::vector<World>& world, const std::vector<bool>& up, Time now) {
    size_t n = 0;
    for (size_t i = 0; i < world.size(); ++i) n += world[i].out && up[i];
    most_ = std::max(most_, n);
    if (n > bound_ && violations_ < 5) {
      ADD_FAILURE() << n << " nodes out of service at once (bound " << bound_ << ") at "
                    << std::chrono::duration<double>(now).count() << " s";
      ++violations_;
    }
  }
  size_t most() const { return most_; }

 private:
  size_t bound_;
  size_t most_ = 0;
  int violations_ = 0;
};

class SimHooks final : public HookExec {
 public:
  SimHooks(Clock& clock, World& world, std::mt19937_64& rng, std::function<void()> changed)
      : clock_(clock), world_(world), rng_(rng), changed_(std::move(changed)) {}
  ~SimHooks() override { *alive_ = false; }
  void Run(HookRequest req, std::function<void(Result<HookResult>)> done) override {
    Duration took = std::chrono::milliseconds(50 + rng_() % 400);
    clock_.Schedule(took, [this, req = std::move(req), done = std::move(done), took, alive = alive_] {
      if (!*alive) return;  // crashed mid-hook: it never finished
      HookResult r;
      r.took = took;
      r.exit_code = Act(req) ? 0 : 1;
      changed_();
      done(r);
    });
  }

 private:
  bool Act(const HookRequest& req) {
    auto env = [&](const char* k) {
      auto it = req.env.find(k);
      return it == req.env.end() ? std::string() : it->second;
    };
    const std::string kind = env("STARLING_HOOK");
    if (kind == "install") world_.installed = env("STARLING_VERSION");
    if (kind == "verify") return world_.installed == env("STARLING_VERSION");
    if (kind == "remove") world_.installed.clear();
    if (kind == "start") world_.running = world_.installed;
    if (kind == "stop") {
      world_.running.clear();
      if (!env("STARLING_REVISION").empty()) world_.out = true;
    }
    if (kind == "health") {
      bool ok = !world_.running.empty() && !world_.bad.count(world_.running);
      if (ok) world_.out = false;
      return ok;
    }
    return true;
  }
  Clock& clock_;
  World& world_;
  std::mt19937_64& rng_;
  std::function<void()> changed_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

std::string Doc(const std::string& version, bool auto_upgrade = false) {
  Json nodes = Json::object();
  for (int i = 0; i < kNodes; ++i) nodes["n" + std::to_string(i)] = {{"lifecycle", "commissioned"}, {"roles", {"web"}}};
  Json voters = Json::array();
  for (int i = 0; i < kVoters; ++i) voters.push_back("n" + std::to_string(i));
  Json doc = {
      {"roles", {"web"}},
      {"packages", {{"web", {{"version", version}, {"roles", {"web"}}, {"hooks", {{"install", "i"}, {"verify", "v"}}}}}}},
      {"services",
       {{"api", {{"package", "web"}, {"roles", {"web"}}, {"hooks", {{"start", "s"}, {"stop", "t"}, {"health", "h"}}}}}}},
      {"nodes", nodes},
      {"voters", voters},
      {"policy",
       {{"batch", {1, "30%"}},
        {"min_healthy", "2s"},
        {"node_deadline", "20s"},
        {"progress_deadline", "10m"},
        {"failure_threshold", 0},
        {"auto_revert", true}}},
      {"switches", {{"auto_upgrade", auto_upgrade}}}};
  return doc.dump();
}

class RolloutCluster {
 public:
  explicit RolloutCluster(uint64_t seed)
      : rng_(seed), world_(kNodes), nodes_(kNodes), c_(seed, sim::ProfileConfig("local")) {
    for (int i = 0; i < kNodes; ++i) c_.Add();
    c_.OnBoot([this](int i) { Boot(i); });
    c_.OnCrash([this](int i) { Down(i); });
  }
  ~RolloutCluster() {
    for (int i = 0; i < kNodes; ++i) Down(i);
  }

  Cluster& cluster() { return c_; }
  std::mt19937_64& rng() { return rng_; }
  World& world(int i) { return world_[i]; }
  NodeStack& node(int i) { return nodes_[i]; }
  const Oracle& oracle() const { return oracle_; }
  size_t batches_checked() const { return batches_checked_; }
  std::vector<bool> Up() const {
    std::vector<bool> up(kNodes);
    for (int i = 0; i < kNodes; ++i) up[i] = c_.up(i);
    return up;
  }

  // The record as node i holds it.
  std::optional<RolloutRecord> Record(int i) {
    if (!nodes_[i].log) return std::nullopt;
    return ReadRecord<RolloutRecord>(nodes_[i].log->state(), kRolloutKey);
  }
  // Whether every up node holds rollout `id` settled, and the same record.
  std::optional<RolloutRecord> Settled(uint64_t id) {
    std::optional<RolloutRecord> seen;
    for (int i = 0; i < kNodes; ++i) {
      if (!c_.up(i)) continue;
      auto r = Record(i);
      if (!r || r->id != id || !r->settled()) return std::nullopt;
      if (seen && !(seen->state == r->state)) return std::nullopt;
      seen = r;
    }
    return seen;
  }

 private:
  void Boot(int i) {
    std::vector<std::string> voters;
    for (int v = 0; v < kVoters; ++v) voters.push_back(c_.name(v));
    auto hooks = std::make_unique<SimHooks>(c_.clock(i), world_[i], rng_,
                                            [this] { oracle_.Check(world_, Up(), c_.Now()); });
    AgentConfig acfg;
    acfg.health_every = NodeTimingFor("local").health_every;  // what the daemon runs with
    acfg.health_retry = 500ms;
    nodes_[i].Boot(c_, i, ++generation_[i], voters, std::move(hooks), acfg);
    nodes_[i].engine->Observe([this](const std::optional<RolloutRecord>& before, const RolloutRecord& r,
                                     const std::vector<NodeView>& views) { CheckBatchStart(before, r, views); });
  }
  // Every batch the holder starts while a rollout runs: each node of the
  // batch before is alive and healthy on a fresh report in the holder's
  // view, or failed, or gone. A planner that takes a dead node's last
  // healthy report at its word fails here.
  void CheckBatchStart(const std::optional<RolloutRecord>& before, const RolloutRecord& r,
                       const std::vector<NodeView>& views) {
    if (!before || before->id != r.id || r.state != "running" || r.batch_no == before->batch_no ||
        before->batches == 0)
      return;
    ++batches_checked_;
    for (const NodeView& v : views) {
      auto a = before->nodes.find(v.name);
      if (a == before->nodes.end() || a->second.batch != before->batch_no || r.failed.count(v.name) ||
          !v.commissioned || v.left)
        continue;
      if (!v.Serving() && batch_violations_ < 5) {
        ++batch_violations_;
        ADD_FAILURE() << "batch " << r.batches << " of rollout " << r.id << " started at "
                      << std::chrono::duration<double>(c_.Now()).count() << " s while " << v.name
                      << " of the batch before was " << (!v.reachable ? "down" : v.suspect ? "suspect" : !v.fresh ? "on a stale report" : "unhealthy");
      }
    }
  }
  void Down(int i) {
    nodes_[i].Down();
    // Its service is down now because the node is, not because of a rollout.
    world_[i].out = false;
  }

  std::mt19937_64 rng_;
  std::vector<World> world_;
  std::vector<NodeStack> nodes_;
  std::map<int, uint32_t> generation_;
  Oracle oracle_{3};  // batch [1, "30%"] of 7 nodes: at most 3
  int batch_violations_ = 0;
  size_t batches_checked_ = 0;
  Cluster c_;         // last: its teardown calls Down()
};

struct Tally {
  std::map<std::string, int> states;
  int crashes = 0, partitions = 0, bad = 0;
  size_t batches_checked = 0;
};

// Runs `rollouts` rollouts, each with `fault_window` of random crashes,
// restarts, partitions, loss and (sometimes) a version that fails its
// health check on one node; then heals and waits for the rollout to end.
void RunSeed(uint64_t seed, int rollouts, Duration fault_window, Tally& tally) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  RolloutCluster rc(seed);
  Cluster& c = rc.cluster();
  auto& rng = rc.rng();
  ASSERT_TRUE(c.FormAll(200ms));
  ASSERT_TRUE(StateCommands(*rc.node(0).replicator).Apply({Doc("1"), "sim", ""}).ok());
  c.loop().RunFor(5s);

  for (int k = 0; k < rollouts; ++k) {
    const std::string version = std::to_string(k + 1);
    int writer = 0;
    while (!c.up(writer)) writer = static_cast<int>(rng() % kNodes);
    if (k > 0) {
      ASSERT_TRUE(StateCommands(*rc.node(writer).replicator).Apply({Doc(version), "sim", ""}).ok());
    }
    if (rng() % 3 == 0) {
      rc.world(static_cast<int>(rng() % kNodes)).bad.insert(version);
      ++tally.bad;
    }
    c.loop().RunFor(1s);
    auto req = RequestRollout(*rc.node(writer).replicator, "", c.name(writer));
    ASSERT_TRUE(req.ok()) << req.status().ToString();
    const uint64_t id = (*req)["id"].get<uint64_t>();

    // Faults.
    const Time end = c.Now() + fault_window;
    while (c.Now() < end) {
      c.loop().RunFor(std::chrono::milliseconds(2000 + rng() % 6000));
      std::vector<int> up, down;
      for (int i = 0; i < kNodes; ++i) (c.up(i) ? up : down).push_back(i);
      switch (rng() % 5) {
        case 0:
        case 1:
          if (down.size() < 2) {
            c.Crash(up[rng() % up.size()]);
            ++tally.crashes;
          }
          break;
        case 2:
          if (!down.empty()) c.Restart(down[rng() % down.size()]);
          break;
        case 3: {
          std::vector<std::vector<int>> groups(2);
          for (int i = 0; i < kNodes; ++i) groups[rng() % 2].push_back(i);
          c.Partition(groups);
          ++tally.partitions;
          break;
        }
        default:
          c.Heal();
          c.SetLoss(static_cast<double>(rng() % 6) / 100.0);
          break;
      }
    }
    c.Heal();
    c.SetLoss(0);
    for (int i = 0; i < kNodes; ++i)
      if (!c.up(i)) c.Restart(i);

    std::optional<RolloutRecord> done;
    bool ended = c.loop().RunUntil([&] { return (done = rc.Settled(id)).has_value(); }, 15min, 1s);
    ASSERT_TRUE(ended) << "rollout " << id << " of version " << version << " never ended; node 0 holds "
                       << (rc.Record(0) ? rc.Record(0)->ToJson().dump() : "nothing");
    ++tally.states[done->state];
    if (std::getenv("STARLING_VERBOSE"))
      std::printf("rollout %llu of version %s: %s %s\n", static_cast<unsigned long long>(id), version.c_str(),
                  done->state.c_str(), done->reason.c_str());
    // Settled means settled everywhere: every node comes to the revision
    // the rollout left in force (catch-up of late nodes included), unless it failed.
    if (done->state != "failed") {
      // incomplete: the down and failed nodes stay off it until catch-up.
      const std::string want =
          done->state == "succeeded" || done->state == "incomplete" ? done->revision : done->from;
      bool converged = c.loop().RunUntil(
          [&] {
            auto now = rc.Record(0);
            for (int i = 0; i < kNodes; ++i) {
              if (now && now->failed.count(c.name(i))) continue;  // failed to catch up: stays out
              if (!rc.node(i).agent || rc.node(i).agent->applied() != want || rc.node(i).agent->busy()) return false;
            }
            return true;
          },
          5min, 1s);
      if (!converged) {
        std::string who;
        for (int i = 0; i < kNodes; ++i)
          if (rc.node(i).agent)
            who += " n" + std::to_string(i) + "=" + rc.node(i).agent->applied() +
                   (rc.node(i).agent->busy() ? "(busy)" : "") + "/" + rc.node(i).soft->local().phase;
        ADD_FAILURE() << "after rollout " << id << " (" << done->state << ") not every node runs " << want << ":"
                      << who << "; record " << rc.Record(0)->ToJson().dump();
      }
    }
  }
  tally.batches_checked += rc.batches_checked();
}

TEST(RolloutSim, MaxUnavailableHoldsAndEveryRolloutEndsUnderFaults) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  const uint64_t first = SeedOr(1);
  const int seeds = std::getenv("STARLING_SEED") ? 1 : 100;
  Tally tally;
  for (int s = 0; s < seeds; ++s) {
    std::printf("seed %llu\n", static_cast<unsigned long long>(first + s));
    RunSeed(first + s, 3, 60s, tally);
    if (HasFatalFailure()) return;
  }
  std::printf("rollouts:");
  for (const auto& [state, n] : tally.states) std::printf(" %s %d", state.c_str(), n);
  std::printf("; crashes %d, partitions %d, bad versions %d; batch starts checked %zu\n", tally.crashes,
              tally.partitions, tally.bad, tally.batches_checked);
  EXPECT_GT(tally.batches_checked, static_cast<size_t>(seeds));  // the check ran, and often
  int total = 0;
  for (const auto& [_, n] : tally.states) total += n;
  EXPECT_EQ(total, seeds * 3);
}

TEST(RolloutSim, QuietRolloutSucceedsWithBatchesOfTheRamp) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  RolloutCluster rc(SeedOr(7));
  Cluster& c = rc.cluster();
  ASSERT_TRUE(c.FormAll(200ms));
  ASSERT_TRUE(StateCommands(*rc.node(0).replicator).Apply({Doc("1"), "sim", ""}).ok());
  c.loop().RunFor(5s);
  for (const std::string version : {"1", "2"}) {
    ASSERT_TRUE(StateCommands(*rc.node(1).replicator).Apply({Doc(version), "sim", ""}).ok());
    c.loop().RunFor(1s);
    auto req = RequestRollout(*rc.node(3).replicator, "", "n3");
    ASSERT_TRUE(req.ok()) << req.status().ToString();
    std::optional<RolloutRecord> done;
    ASSERT_TRUE(c.loop().RunUntil([&] { return (done = rc.Settled((*req)["id"])).has_value(); }, 5min, 1s));
    EXPECT_EQ(done->state, "succeeded");
    // 7 nodes in batches 1, 3, 3.
    EXPECT_EQ(done->batches, 3u);
    for (int i = 0; i < kNodes; ++i) EXPECT_EQ(rc.world(i).running, version) << i;
  }
  // The upgrade took 3 nodes out of service at once, never more.
  EXPECT_EQ(rc.oracle().most(), 3u);
}

TEST(RolloutSim, AutoUpgradeRollsOutEachNewRevision) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  RolloutCluster rc(SeedOr(11));
  Cluster& c = rc.cluster();
  ASSERT_TRUE(c.FormAll(200ms));
  for (const std::string version : {"1", "2"}) {
    ASSERT_TRUE(StateCommands(*rc.node(2).replicator).Apply({Doc(version, true), "sim", ""}).ok());
    bool everywhere = c.loop().RunUntil(
        [&] {
          for (int i = 0; i < kNodes; ++i)
            if (rc.world(i).running != version) return false;
          return true;
        },
        5min, 1s);
    EXPECT_TRUE(everywhere) << "version " << version;
  }
  // Two rollouts, one per revision, and nothing more.
  EXPECT_TRUE(c.loop().RunUntil([&] { return rc.Settled(2).has_value(); }, 1min, 1s));
  c.loop().RunFor(10s);
  auto r = rc.Record(0);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, 2u);
  EXPECT_EQ(r->state, "succeeded");
}

TEST(RolloutSim, NodesIgnoreARecordFromAnOlderBallotAndTheHolderRestoresIt) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  RolloutCluster rc(SeedOr(5));
  Cluster& c = rc.cluster();
  ASSERT_TRUE(c.FormAll(200ms));
  ASSERT_TRUE(StateCommands(*rc.node(0).replicator).Apply({Doc("1"), "sim", ""}).ok());
  c.loop().RunFor(2s);
  auto req = RequestRollout(*rc.node(0).replicator, "", "n0");
  ASSERT_TRUE(req.ok());
  ASSERT_TRUE(c.loop().RunUntil([&] { return rc.Settled((*req)["id"]).has_value(); }, 5min, 1s));
  // Version 2 is in the desired state but nobody asked to roll it out.
  auto applied = StateCommands(*rc.node(0).replicator).Apply({Doc("2"), "sim", ""});
  ASSERT_TRUE(applied.ok());
  c.loop().RunFor(2s);
  RolloutRecord forged = *rc.Record(0);
  ASSERT_GT(forged.ballot, 0u);
  const uint64_t good_ballot = forged.ballot;
  int holder = -1, victim = -1;
  for (int i = 0; i < kNodes; ++i) (rc.node(i).lease->IsHolder() ? holder : victim) = i;
  ASSERT_GE(holder, 0);
  // A deposed coordinator's late write: an older ballot, assigning version 2 to the victim now.
  forged.ballot = good_ballot - 1;
  forged.batch_no += 1;
  forged.batch = {c.name(victim)};
  forged.nodes[c.name(victim)] = Assignment{(*applied)["revision"].get<std::string>(), forged.batch_no, false};
  ASSERT_TRUE(rc.node(victim)
                  .replicator->Write({store::Op{kRolloutKey, forged.ToJson().dump()}}, "rollout: forged",
                                     rc.node(victim).log->last_hlc())
                  .ok());
  c.loop().RunFor(30s);
  for (int i = 0; i < kNodes; ++i) EXPECT_EQ(rc.world(i).running, "1") << i;
  for (int i = 0; i < kNodes; ++i) {
    auto r = rc.Record(i);
    ASSERT_TRUE(r);
    EXPECT_GE(r->ballot, good_ballot) << "node " << i << " still holds the forged record";
    EXPECT_TRUE(r->batch.empty());
  }
}

}  // namespace
}  // namespace starling::node
