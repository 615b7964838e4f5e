// Rollouts on virtual time: every node runs the whole stack (log, lease,
// soft state, agent, engine) over the simulated network, and its hooks act
// on a simulated world that survives crashes, as real services do. An
// oracle watching the world checks that the rollouts never take more nodes
// out of service at once than the policy's largest batch, and that every
// rollout ends (succeeded, failed or reverted) once the faults stop.
// Every test prints its seed; rerun one with STARLING_SEED=<seed>.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <random>
#include <set>

#include "starling/sim/node_stack.h"
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

// With `voters` false the document leaves the voters to the lease.
std::string Doc(const std::string& version, bool auto_upgrade = false, bool voters_in_doc = true) {
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
      {"policy",
       {{"batch", {1, "30%"}},
        {"min_healthy", "2s"},
        {"node_deadline", "20s"},
        {"progress_deadline", "10m"},
        {"failure_threshold", 0},
        {"auto_revert", true}}},
      {"switches", {{"auto_upgrade", auto_upgrade}}}};
  if (voters_in_doc) doc["voters"] = voters;
  return doc.dump();
}

class RolloutCluster {
 public:
  // `keep_voters`: every node keeps its voters as the daemon does, and only
  // node 0 and `lone` (a node started without seeds) are founders.
  explicit RolloutCluster(uint64_t seed, bool keep_voters = false, int lone = -1)
      : rng_(seed), world_(kNodes), nodes_(kNodes), keep_voters_(keep_voters), lone_(lone),
        c_(seed, sim::ProfileConfig("local")) {
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
  // Whether every up node holds rollout `id` settled, and the same record;
  // or a later rollout settled (a request that waited for `id` to end).
  std::optional<RolloutRecord> Settled(uint64_t id) {
    std::optional<RolloutRecord> seen;
    for (int i = 0; i < kNodes; ++i) {
      if (!c_.up(i)) continue;
      auto r = Record(i);
      if (!r || r->id < id || !r->settled()) return std::nullopt;
      if (seen && seen->id != r->id) return std::nullopt;
      if (seen && !(seen->state == r->state)) return std::nullopt;
      seen = r;
    }
    return seen;
  }

 private:
  void Boot(int i) {
    std::vector<std::string> voters;
    if (!keep_voters_)
      for (int v = 0; v < kVoters; ++v) voters.push_back(c_.name(v));
    auto hooks = std::make_unique<SimHooks>(c_.clock(i), world_[i], rng_,
                                            [this] { oracle_.Check(world_, Up(), c_.Now()); });
    AgentConfig acfg;
    acfg.health_every = NodeTimingFor("local").health_every;  // what the daemon runs with
    acfg.health_retry = 500ms;
    ASSERT_TRUE(nodes_[i].Boot(c_, i, ++generation_[i], voters, std::move(hooks), acfg, i == 0 || i == lone_).ok());
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
  bool keep_voters_;
  int lone_;
  int batch_violations_ = 0;
  size_t batches_checked_ = 0;
  Cluster c_;         // last: its teardown calls Down()
};

// A random cut of the cluster in two.
void CutInTwo(Cluster& c, std::mt19937_64& rng) {
  std::vector<std::vector<int>> groups(2);
  for (int i = 0; i < kNodes; ++i) groups[rng() % 2].push_back(i);
  c.Partition(groups);
}

// Heals any cut and leaves 0 to 5 % loss.
void HealWithSomeLoss(Cluster& c, std::mt19937_64& rng) {
  c.Heal();
  c.SetLoss(static_cast<double>(rng() % 6) / 100.0);
}

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
        case 3:
          CutInTwo(c, rng);
          ++tally.partitions;
          break;
        default:
          HealWithSomeLoss(c, rng);
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

// Runs `run` on `count` seeds from 1, or on STARLING_SEED alone; how many
// ran. Stops at a fatal failure.
int EachSeed(int count, const std::function<void(uint64_t)>& run) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  const uint64_t first = SeedOr(1);
  const int seeds = std::getenv("STARLING_SEED") ? 1 : count;
  for (int s = 0; s < seeds; ++s) {
    std::printf("seed %llu\n", static_cast<unsigned long long>(first + s));
    run(first + s);
    if (::testing::Test::HasFatalFailure()) return s + 1;
  }
  return seeds;
}

TEST(RolloutSim, MaxUnavailableHoldsAndEveryRolloutEndsUnderFaults) {
  Tally tally;
  const int seeds = EachSeed(100, [&](uint64_t seed) { RunSeed(seed, 3, 60s, tally); });
  if (HasFatalFailure()) return;
  std::printf("rollouts:");
  for (const auto& [state, n] : tally.states) std::printf(" %s %d", state.c_str(), n);
  std::printf("; crashes %d, partitions %d, bad versions %d; batch starts checked %zu\n", tally.crashes,
              tally.partitions, tally.bad, tally.batches_checked);
  EXPECT_GT(tally.batches_checked, static_cast<size_t>(seeds));  // the check ran, and often
  int total = 0;
  for (const auto& [_, n] : tally.states) total += n;
  EXPECT_EQ(total, seeds * 3);
}

// ---- operators ---------------------------------------------------------------------------------

constexpr int kLone = kNodes - 1;  // started without seeds: it chooses voters alone, joins later

struct OperatorTally {
  std::map<std::string, int> done, refused;
  int crashes = 0, partitions = 0;
  size_t batches_checked = 0, unfreezes_checked = 0;
  int lone_merges = 0;
};

// Every time the freeze went from set to lifted in this node's history, it
// was an unfreeze that lifted it. Revisions folded into the snapshot are
// passed over.
void CheckFreezeOnlyEndsByUnfreeze(const store::DesiredLog& log, const std::string& who, OperatorTally& tally) {
  bool frozen = false;
  for (const store::Revision& rev : log.History()) {
    auto doc = log.DocumentAt(rev.id);
    if (!doc.ok()) continue;
    const bool now = FrozenReason(*doc).has_value();
    if (frozen && !now) {
      ++tally.unfreezes_checked;
      EXPECT_EQ(rev.note.rfind("unfreeze", 0), 0u)
          << who << ": the freeze was lifted by revision " << rev.id << " (" << rev.note << ")";
    }
    frozen = now;
  }
}

// One seed: six nodes form a cluster and a seventh starts alone; operators
// on random nodes apply (copies that say `freeze: false` too), freeze,
// unfreeze, roll back, force voter sets, decommission and commission, and
// start rollouts, amid crashes, partitions and loss; the lone node joins
// part way. Then the faults stop.
void RunOperatorSeed(uint64_t seed, Duration window, OperatorTally& tally) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  RolloutCluster rc(seed, /*keep_voters=*/true, kLone);
  Cluster& c = rc.cluster();
  auto& rng = rc.rng();
  c.Start(0);
  for (int i = 1; i < kLone; ++i) c.StartAndJoin(i, 0);
  c.Start(kLone);
  c.loop().RunFor(3s);
  ASSERT_TRUE(StateCommands(*rc.node(0).replicator).Apply({Doc("1", false, false), "sim", ""}).ok());
  // The lone node has a desired state and a lease of its own.
  ASSERT_TRUE(StateCommands(*rc.node(kLone).replicator).Apply({Doc("1", false, false), "sim", ""}).ok());
  c.loop().RunFor(5s);

  bool joined = false;
  int version = 1;
  const Time join_at = c.Now() + window / 3, end = c.Now() + window;
  auto up_node = [&] {
    std::vector<int> up;
    for (int i = 0; i < kNodes; ++i)
      if (c.up(i) && (joined || i != kLone)) up.push_back(i);
    return up[rng() % up.size()];
  };
  auto count = [&](const char* what, bool ok) { ++(ok ? tally.done : tally.refused)[what]; };
  while (c.Now() < end) {
    c.loop().RunFor(std::chrono::milliseconds(1000 + rng() % 4000));
    if (!joined && c.Now() >= join_at) {
      // `starling join` of the node that ran alone: the voters it chose
      // alone must not win over the cluster's.
      const store::Register* own = rc.node(kLone).log->state().Find("voters");
      ASSERT_TRUE(own) << "the lone node chose no voters";
      const store::Stamp solo = own->stamp;
      const int seed_node = up_node();
      c.Join(kLone, {seed_node});
      joined = true;
      const bool merged = c.loop().RunUntil(
          [&] { return !c.up(seed_node) || rc.node(seed_node).log->Holds({solo.origin, solo.seq}); },
          30s);
      if (merged && c.up(seed_node)) {
        ++tally.lone_merges;
        const store::Register* now = rc.node(seed_node).log->state().Find("voters");
        EXPECT_TRUE(now && !(now->stamp == solo))
            << "the voters " << c.name(kLone) << " chose alone won over the cluster's: " << now->value.value_or("");
      }
      continue;
    }
    // A join through a seed it could not reach (a partition) fails, and
    // the operator runs it again.
    if (joined && c.up(kLone) && c.node(kLone).NumAlive() == 1) c.Join(kLone, {up_node()});
    const int at = up_node();
    // A rollout for chosen nodes never assigns another node a revision (the
    // record keeps earlier rollouts' assignments too: those of its own
    // batches count).
    if (auto r = rc.Record(at); r && !r->only.empty()) {
      for (const auto& [assigned, a] : r->nodes) {
        if (a.batch + r->batches <= r->batch_no) continue;
        EXPECT_TRUE(r->Moves(assigned)) << "rollout " << r->id << " moved " << assigned << ", not one of "
                                        << Json(r->only).dump();
      }
    }
    StateCommands ops(*rc.node(at).replicator);
    const std::string name = c.name(at);
    switch (rng() % 12) {
      case 0: {  // an apply of a copy that says `freeze: false`, as most do
        Json doc = Json::parse(Doc(std::to_string(++version), false, false));
        if (rng() % 2) doc["freeze"] = false;
        const bool was_frozen = FrozenReason(rc.node(at).log->state().Document()).has_value();
        auto r = ops.Apply({doc.dump(), "sim", ""});
        count("apply", r.ok());
        if (was_frozen) {
          EXPECT_TRUE(FrozenReason(rc.node(at).log->state().Document()).has_value())
              << "an apply on " << name << " lifted the freeze";
        }
        break;
      }
      case 1:
        count("freeze", ops.Freeze("release week", name).ok());
        break;
      case 2:
        count("unfreeze", ops.Unfreeze().ok());
        break;
      case 3: {
        const bool was_frozen = FrozenReason(rc.node(at).log->state().Document()).has_value();
        count("rollback", ops.Rollback("").ok());
        if (was_frozen) {
          EXPECT_TRUE(FrozenReason(rc.node(at).log->state().Document()).has_value())
              << "a rollback on " << name << " lifted the freeze";
        }
        break;
      }
      case 4: {  // `voters --force-set` of three members
        std::vector<int> all;
        for (int i = 0; i < kNodes; ++i)
          if (joined || i != kLone) all.push_back(i);
        std::shuffle(all.begin(), all.end(), rng);
        Json voters = Json::array();
        for (int k = 0; k < 3; ++k) voters.push_back(c.name(all[k]));
        count("voters", ops.Apply({Json{{"voters", voters}}.dump(), "voters --force-set", "", {}, true}).ok());
        break;
      }
      case 5: {
        const std::string who = c.name(static_cast<int>(rng() % kLone));
        const bool decommission = rng() % 2;
        count(decommission ? "decommission" : "commission",
              ops.SetLifecycle({who}, decommission ? "decommissioned" : "commissioned").ok());
        break;
      }
      case 6:
        count("rollout start", RequestRollout(*rc.node(at).replicator, "", name).ok());
        break;
      case 7: {  // the console's "approve for these nodes", with a batch size of its own
        std::vector<std::string> only;
        for (int i = 0; i < kNodes; ++i)
          if (rng() % 2) only.push_back(c.name(i));
        const Json batches[] = {Json(1), Json(2), Json("30%")};  // within the oracle's bound of 3
        count("rollout start --nodes",
              RequestRollout(*rc.node(at).replicator, "", name, false, only, batches[rng() % 3]).ok());
        break;
      }
      case 8: {
        std::vector<int> down;
        for (int i = 0; i < kNodes; ++i)
          if (!c.up(i)) down.push_back(i);
        if (down.size() < 2) {
          c.Crash(at);
          ++tally.crashes;
        } else {
          c.Restart(down[rng() % down.size()]);
        }
        break;
      }
      case 9:
        CutInTwo(c, rng);
        ++tally.partitions;
        break;
      case 10:
        HealWithSomeLoss(c, rng);
        break;
      default:
        for (int i = 0; i < kNodes; ++i)
          if (!c.up(i)) c.Restart(i);
        break;
    }
  }
  c.Heal();
  c.SetLoss(0);
  for (int i = 0; i < kNodes; ++i)
    if (!c.up(i)) c.Restart(i);
  c.loop().RunFor(5s);
  if (c.node(kLone).NumAlive() == 1) c.Join(kLone, {0});

  // One desired state, one voter set, one holder every node names.
  std::string why;
  const bool converged = c.loop().RunUntil(
      [&] {
        const store::Json& doc = rc.node(0).log->state().Document();
        if (!doc.contains("voters") || !doc["voters"].is_array() || doc["voters"].empty()) {
          why = "no voters in n0's document";
          return false;
        }
        std::optional<std::string> holder;
        for (int i = 0; i < kNodes; ++i) {
          if (rc.node(i).log->digest() != rc.node(0).log->digest()) {
            why = c.name(i) + " holds another desired state than n0 (" + std::to_string(c.node(i).NumAlive()) +
                  " members alive in its view, " + std::to_string(rc.node(i).log->entries()) + " entries to n0's " +
                  std::to_string(rc.node(0).log->entries()) + ")";
            return false;
          }
          const Lease::View v = rc.node(i).lease->view();
          if (!v.holder || (holder && *holder != *v.holder)) {
            why = c.name(i) + " names holder " + v.holder.value_or("(none)") + ", another node " +
                  holder.value_or("(none)");
            return false;
          }
          holder = v.holder;
        }
        if (std::find(doc["voters"].begin(), doc["voters"].end(), *holder) == doc["voters"].end()) {
          why = "the holder " + *holder + " is no voter of " + doc["voters"].dump();
          return false;
        }
        return true;
      },
      5min, 1s);
  EXPECT_TRUE(converged) << why;
  // The rollout in flight, if any, ends.
  auto record = rc.Record(0);
  if (record && !record->settled()) {
    const uint64_t id = record->id;
    EXPECT_TRUE(c.loop().RunUntil([&] { return rc.Settled(id).has_value(); }, 15min, 1s))
        << "rollout " << id << " never ended: " << rc.Record(0)->ToJson().dump();
  }
  for (int i = 0; i < kNodes; ++i) CheckFreezeOnlyEndsByUnfreeze(*rc.node(i).log, c.name(i), tally);
  tally.batches_checked += rc.batches_checked();
}

// The safety promises under what operators do: a freeze only ends
// by unfreeze, never a batch started while a node of the batch before is
// not alive and healthy on a fresh report, never more nodes out of service
// than the largest batch, and in the end one voter set with one holder.
TEST(OperatorSim, SafetyHoldsThroughOperatorActionsJoinsAndFaults) {
  OperatorTally tally;
  const int seeds = EachSeed(40, [&](uint64_t seed) { RunOperatorSeed(seed, 120s, tally); });
  if (HasFatalFailure()) return;
  std::printf("operator actions done:");
  for (const auto& [what, n] : tally.done) std::printf(" %s %d", what.c_str(), n);
  std::printf("; refused:");
  for (const auto& [what, n] : tally.refused) std::printf(" %s %d", what.c_str(), n);
  std::printf("; crashes %d, partitions %d; batch starts checked %zu, freeze lifts checked %zu, lone merges %d\n",
              tally.crashes, tally.partitions, tally.batches_checked, tally.unfreezes_checked, tally.lone_merges);
  // The checks ran, and often (one seed alone may have little to check).
  if (seeds == 1) return;
  EXPECT_GT(tally.batches_checked, static_cast<size_t>(seeds));
  EXPECT_GT(tally.unfreezes_checked, static_cast<size_t>(seeds));
  EXPECT_GT(tally.done["freeze"], 0);
  EXPECT_GT(tally.lone_merges, seeds / 2);
  // Rollouts of every node and of chosen nodes together: how the operator's
  // random picks and the refusals (running, frozen) split them varies.
  EXPECT_GT(tally.done["rollout start"] + tally.done["rollout start --nodes"], seeds);
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

// An apply's document is read (for the freeze it carries, the nodes it
// would auto-commission) before it is validated: a field of the wrong type
// is refused with its path, and never throws out of the daemon.
TEST(RolloutSim, AnApplyWithFieldsOfTheWrongTypeIsRefusedByPath) {
  spdlog::set_level(spdlog::level::off);
  RolloutCluster rc(SeedOr(3));
  ASSERT_TRUE(rc.cluster().FormAll(200ms));
  StateCommands ops(
      *rc.node(0).replicator, [] { return std::vector<std::string>{"n0", "n1"}; },
      [] { return std::vector<std::string>{"n0", "n1"}; });
  const struct {
    const char* doc;
    const char* path;
  } cases[] = {
      {"switches: {auto_commission: \"yes\"}", "switches.auto_commission"},
      {"switches: {auto_upgrade: 1}", "switches.auto_upgrade"},
      {"freeze: {reason: 5}", "freeze.reason"},
      {"freeze: {reason: [a], by: 3}", "freeze.reason"},
      {"nodes: {n0: {lifecycle: 7}}", "nodes.n0.lifecycle"},
  };
  for (const auto& c : cases) {
    auto r = ops.Apply({c.doc, "typo.yaml", ""});
    ASSERT_FALSE(r.ok()) << c.doc;
    EXPECT_NE(r.status().message().find(c.path), std::string::npos) << c.doc << ": " << r.status().message();
  }
  EXPECT_EQ(ops.Frozen(), std::nullopt);
  // The same fields, well typed, are taken.
  auto r = ops.Apply({"switches: {auto_commission: true}", "ok.yaml", ""});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)["commissioned"], Json({"n0", "n1"})) << r->dump();
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

// One key holder sends the largest ballot there is: a prepare and a notice
// to every node, and a rollout record of that ballot assigning a revision
// nobody asked for. Were they taken, no ballot would be left above it, and
// no lease or rollout would ever happen again. Refused as out of reach, they
// stop nothing: the next rollout runs on ordinary ballots.
TEST(RolloutSim, ATopBallotFromOneKeyHolderStopsNoRollout) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  RolloutCluster rc(SeedOr(9));
  Cluster& c = rc.cluster();
  ASSERT_TRUE(c.FormAll(200ms));
  ASSERT_TRUE(StateCommands(*rc.node(0).replicator).Apply({Doc("1"), "sim", ""}).ok());
  c.loop().RunFor(2s);
  auto first = RequestRollout(*rc.node(0).replicator, "", "n0");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(c.loop().RunUntil([&] { return rc.Settled((*first)["id"]).has_value(); }, 5min, 1s));
  auto two = StateCommands(*rc.node(0).replicator).Apply({Doc("2"), "sim", ""});
  ASSERT_TRUE(two.ok());
  c.loop().RunFor(2s);

  constexpr uint64_t kTop = ~uint64_t{0};
  const int attacker = kNodes - 1;
  for (int i = 0; i < kNodes; ++i) {
    for (LeaseKind kind : {LeaseKind::kPrepare, LeaseKind::kNotice}) {
      LeaseMsg m;
      m.kind = kind;
      m.from = c.name(attacker);
      m.round = kTop;
      m.owner = c.name(attacker);
      m.duration_ms = 1000;
      rc.node(i).lease->HandlePacket(c.name(attacker), EncodeLease(m));
    }
  }
  RolloutRecord forged = *rc.Record(attacker);
  forged.ballot = kTop;
  forged.state = "running";
  forged.batch_no += 1;
  forged.batch = {c.name(0)};
  forged.nodes[c.name(0)] = Assignment{(*two)["revision"].get<std::string>(), forged.batch_no, false};
  ASSERT_TRUE(rc.node(attacker)
                  .replicator->Write({store::Op{kRolloutKey, forged.ToJson().dump()}}, "rollout: forged",
                                     rc.node(attacker).log->last_hlc())
                  .ok());
  c.loop().RunFor(30s);
  for (int i = 0; i < kNodes; ++i) {
    EXPECT_EQ(rc.world(i).running, "1") << "node " << i << " acted on the forged record";
    EXPECT_EQ(rc.node(i).lease->counters().at("ballot_out_of_reach"), 2u) << i;
    EXPECT_LT(rc.node(i).lease->highest_ballot(), kMaxBallotStep) << i;
  }

  // The next rollout is asked for, and runs everywhere.
  auto second = RequestRollout(*rc.node(2).replicator, "", "n2");
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  std::optional<RolloutRecord> done;
  ASSERT_TRUE(c.loop().RunUntil([&] { return (done = rc.Settled((*second)["id"])).has_value(); }, 5min, 1s));
  EXPECT_EQ(done->state, "succeeded") << done->reason;
  EXPECT_LT(done->ballot, kMaxBallotStep);
  for (int i = 0; i < kNodes; ++i) EXPECT_EQ(rc.world(i).running, "2") << i;
}

}  // namespace
}  // namespace starling::node
