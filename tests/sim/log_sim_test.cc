// The desired-state log on virtual time: every simulated node runs the real
// DesiredLog and Replicator over its memberlist, with storage that survives a
// simulated crash the way a synced RocksDB write does.
// Every test prints its seed; rerun with STARLING_SEED=<seed> to replay.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <set>

#include "starling/membership/user_channels.h"
#include "starling/sim/simulator.h"
#include "starling/store/log.h"
#include "starling/store/memberlist_gossip.h"
#include "starling/store/replicator.h"

namespace starling::store {
namespace {

using namespace std::chrono_literals;
using sim::Cluster;

uint64_t Seed(uint64_t fallback) {
  if (const char* s = std::getenv("STARLING_SEED")) return std::strtoull(s, nullptr, 10);
  return fallback;
}

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

// One node's log stack. The storage outlives crashes; the rest is rebuilt
// at every boot, as the daemon does.
struct NodeLog {
  MemoryLogStorage storage;
  std::unique_ptr<DesiredLog> log;
  std::unique_ptr<membership::UserChannels> channels;
  std::unique_ptr<MemberlistGossip> gossip;
  std::unique_ptr<Replicator> replicator;
};

class LogCluster {
 public:
  LogCluster(uint64_t seed, int n, double loss, ReplicatorConfig rcfg = {})
      : nodes_(n), rcfg_(rcfg), c_(seed, sim::ProfileConfig("lan"), sim::NetworkOptions{.loss = loss}) {
    for (int i = 0; i < n; ++i) c_.Add();
    c_.OnBoot([this](int i) { Boot(i); });
    c_.OnCrash([this](int i) { Down(i); });
  }

  bool Form(Duration spread) { return c_.FormAll(spread); }

  Cluster& cluster() { return c_; }
  NodeLog& at(int i) { return nodes_[i]; }

  // Writes one change on node i; returns the acknowledged entry.
  Result<Entry> Write(int i, std::vector<Op> ops) {
    auto& n = nodes_[i];
    return n.replicator->Write(std::move(ops), "sim", n.log->last_hlc());
  }

  // Every up node holds every id in `acked` and has digest `want`.
  bool AllHold(const std::vector<Entry>& acked, const std::string& want) const {
    for (int i = 0; i < c_.size(); ++i) {
      if (!c_.up(i)) continue;
      const auto& log = *nodes_[i].log;
      if (log.digest() != want) return false;
      for (const auto& e : acked)
        if (!log.Holds(e.id())) return false;
    }
    return true;
  }

  // How many up nodes have digest `want`.
  int CountAt(const std::string& want) const {
    int n = 0;
    for (int i = 0; i < c_.size(); ++i)
      if (c_.up(i) && nodes_[i].log->digest() == want) ++n;
    return n;
  }

  uint64_t Counter(const char* name) const {
    uint64_t sum = 0;
    for (const auto& n : nodes_)
      if (n.replicator) sum += n.replicator->counters().at(name);
    auto it = down_counters_.find(name);
    return sum + (it == down_counters_.end() ? 0 : it->second);
  }

 private:
  void Boot(int i) {
    auto& n = nodes_[i];
    // The origin id stands for the data directory: it survives restarts.
    auto log = DesiredLog::Open(n.storage, 1000 + i, c_.name(i));
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    n.log = std::move(*log);
    n.channels = std::make_unique<membership::UserChannels>(c_.node(i));
    n.gossip = std::make_unique<MemberlistGossip>(*n.channels);
    n.replicator = std::make_unique<Replicator>(*n.log, *n.gossip, c_.clock(i), c_.random(i), rcfg_);
    store::AttachReplicator(*n.replicator, *n.channels);
    n.replicator->Start();
  }

  void Down(int i) {
    auto& n = nodes_[i];
    if (n.replicator)
      for (const auto& [k, v] : n.replicator->counters()) down_counters_[k] += v;
    n.replicator.reset();
    n.gossip.reset();
    n.channels.reset();
    n.log.reset();
  }

  std::vector<NodeLog> nodes_;
  ReplicatorConfig rcfg_;
  std::map<std::string, uint64_t> down_counters_;
  Cluster c_;  // last: its teardown calls Down() on the members above
};

// The state every node must reach: the fold of every acknowledged change.
std::string OracleDigest(const std::vector<Entry>& acked) {
  State s;
  for (const auto& e : acked) s.Apply(e);
  return s.Digest();
}

std::vector<Op> RandomChange(Random& rng, int serial) {
  const std::string pkg = "packages/p" + std::to_string(rng.Uniform(40));
  if (rng.Uniform(10) == 0) return {Op{pkg, std::nullopt}};
  return {Op{pkg, "{\"version\":\"1." + std::to_string(serial) + "\"}"}};
}

// `count` random changes, one every `gap`, each written at a random node
// from `first` up; appends each acknowledged entry to `acked`.
void WriteRandom(LogCluster& lc, Random& rng, int count, Duration gap, int first, std::vector<Entry>& acked) {
  const int writers = lc.cluster().size() - first;
  for (int w = 0; w < count; ++w) {
    auto e = lc.Write(first + static_cast<int>(rng.Uniform(writers)), RandomChange(rng, static_cast<int>(acked.size())));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    acked.push_back(*e);
    lc.cluster().loop().RunFor(gap);
  }
}

class LogSimTest : public ::testing::Test {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::err); }
};

// The scenario: 200 nodes, 1,000 changes from random nodes under 10 %
// loss, a partition for the first half of the writes, and crashes and
// restarts throughout (some right after the crashed node acknowledged a
// change it had not yet spread).
TEST_F(LogSimTest, TwoHundredNodesConvergeAfterLossPartitionAndCrashes) {
  const uint64_t seed = Seed(42);
  const int n = 200;
  const int writes = 1000;
  LogCluster lc(seed, n, 0.10);
  Cluster& c = lc.cluster();
  ASSERT_TRUE(lc.Form(5s)) << "membership did not form; seed " << seed;

  SeededRandom rng(seed * 7919 + 1);
  std::vector<int> left, right;
  for (int i = 0; i < n; ++i) (i % 3 == 0 ? right : left).push_back(i);
  c.Partition({left, right});

  std::vector<Entry> acked;
  std::set<int> down;
  int crashes = 0, crashes_after_write = 0;
  // 1,000 writes over 200 virtual seconds: one every 200 ms.
  const Duration step = 200ms;
  for (int w = 0; w < writes; ++w) {
    if (w == writes / 2) c.Heal();
    int i;
    do {
      i = static_cast<int>(rng.Uniform(n));
    } while (!c.up(i));
    auto e = lc.Write(i, RandomChange(rng, w));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    acked.push_back(*e);
    if (w % 10 == 5) {
      // The writer dies at once: its change is durable but unspread.
      c.Crash(i);
      down.insert(i);
      ++crashes;
      ++crashes_after_write;
    } else if (w % 10 == 0) {
      int victim = static_cast<int>(rng.Uniform(n));
      if (c.up(victim)) {
        c.Crash(victim);
        down.insert(victim);
        ++crashes;
      }
    }
    // Bring back nodes that have been down a while (from the members they knew).
    if (w % 25 == 24) {
      for (int d : down) c.Restart(d);
      down.clear();
    }
    c.loop().RunFor(step);
  }
  for (int d : down) c.Restart(d);

  const std::string want = OracleDigest(acked);
  const Time last_write = c.Now();
  bool converged = c.loop().RunUntil([&] { return lc.AllHold(acked, want); }, 600s, 500ms);
  const double took = Seconds(c.Now() - last_write);
  std::printf("200 nodes, %d changes, 10%% loss, partition healed at change %d, %d crashes (%d right after a write): "
              "%s %.1f s (virtual) after the last change; %d/%d nodes at the oracle digest; seed %llu\n",
              writes, writes / 2, crashes, crashes_after_write, converged ? "converged" : "NOT converged", took,
              lc.CountAt(want), n, static_cast<unsigned long long>(seed));
  std::printf("log traffic: %llu anti-entropy bytes sent, %llu bytes queued for gossip (%.0f per change)\n",
              static_cast<unsigned long long>(lc.Counter("anti_entropy_bytes_sent")),
              static_cast<unsigned long long>(lc.Counter("gossip_bytes_queued")),
              static_cast<double>(lc.Counter("gossip_bytes_queued")) / writes);
  EXPECT_TRUE(converged) << "seed " << seed;
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(c.up(i));
    EXPECT_EQ(lc.at(i).log->entries(), acked.size()) << "node " << i;
  }
}

// A node down while the others fold their log into a snapshot comes back to
// snapshot plus tail, and ends with the same state and history.
void ReturnToSnapshotAndTail(uint64_t seed, ReplicatorConfig rcfg) {
  rcfg.sync_interval = 2s;
  LogCluster lc(seed, 8, 0.05, rcfg);
  Cluster& c = lc.cluster();
  ASSERT_TRUE(lc.Form(1s)) << "seed " << seed;
  SeededRandom rng(seed);
  std::vector<Entry> acked;
  auto write_some = [&](int count) { WriteRandom(lc, rng, count, 100ms, 1, acked); };
  write_some(20);
  ASSERT_TRUE(c.loop().RunUntil([&] { return lc.AllHold(acked, OracleDigest(acked)); }, 60s));
  const HighWater had = lc.at(0).log->high_water();
  c.Crash(0);
  // Wait until node 0 is declared failed, so compaction no longer waits on it.
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.AllSee(0, membership::MemberStatus::kFailed); }, 120s));
  write_some(120);
  ASSERT_TRUE(c.loop().RunUntil(
      [&] {
        // Every live node has folded changes node 0 never saw.
        for (int i = 1; i < c.size(); ++i)
          if (!lc.at(i).log->Behind(had)) return false;
        return true;
      },
      300s))
      << "the live nodes never compacted past node 0; seed " << seed;
  c.Restart(0);
  const std::string want = OracleDigest(acked);
  ASSERT_TRUE(c.loop().RunUntil([&] { return lc.AllHold(acked, want); }, 120s)) << "seed " << seed;
  EXPECT_GE(lc.at(0).replicator->counters().at("snapshots_installed"), 1u);
  EXPECT_LT(lc.at(0).log->retained(), acked.size());
  EXPECT_EQ(lc.at(0).log->entries(), acked.size());
  EXPECT_EQ(lc.at(0).log->Current().id, lc.at(1).log->Current().id);
}

// Folding once every live peer has acknowledged the prefix.
TEST_F(LogSimTest, ReturningNodeReceivesSnapshotAndTail) {
  ReplicatorConfig rcfg;
  rcfg.compact_after = 40;
  rcfg.fold_after = std::chrono::hours(24);
  ReturnToSnapshotAndTail(Seed(7), rcfg);
}

// Folding by age alone: no peer's acknowledgement is waited for, which is
// what lets a large cluster fold at all.
TEST_F(LogSimTest, ReturningNodeReceivesSnapshotAndTailWhenTheLogFoldsByAge) {
  ReplicatorConfig rcfg;
  rcfg.fold_after = 20s;
  rcfg.fold_entries = 16;
  ReturnToSnapshotAndTail(Seed(8), rcfg);
}

// Folding by age cuts at aligned stamps: nodes that fold in the same window
// fold the same entries, so every node ends with the same snapshot, and a
// process holding them all (the simulator) keeps its registers once.
TEST_F(LogSimTest, NodesThatFoldTheSameEntriesHoldOneSnapshotBetweenThem) {
  const uint64_t seed = Seed(11);
  ReplicatorConfig rcfg;
  rcfg.sync_interval = 2s;
  rcfg.fold_after = 20s;
  rcfg.fold_entries = 16;
  LogCluster lc(seed, 8, 0.0, rcfg);
  Cluster& c = lc.cluster();
  ASSERT_TRUE(lc.Form(1s)) << "seed " << seed;
  SeededRandom rng(seed);
  std::vector<Entry> acked;
  // Writes over a minute and a half: each node evaluates its fold at its
  // own ticks while newer entries keep arriving.
  WriteRandom(lc, rng, 180, 500ms, 0, acked);
  ASSERT_TRUE(c.loop().RunUntil([&] { return lc.AllHold(acked, OracleDigest(acked)); }, 60s)) << "seed " << seed;
  c.loop().RunFor(5s);
  const Snapshot& first = lc.at(0).log->snapshot();
  EXPECT_GT(lc.at(0).replicator->counters().at("entries_compacted"), 0u);
  for (int i = 1; i < c.size(); ++i) {
    const Snapshot& s = lc.at(i).log->snapshot();
    EXPECT_EQ(s.covered, first.covered) << "node " << i << " folded other entries; seed " << seed;
    EXPECT_EQ(s.registers.identity(), first.registers.identity()) << "node " << i << "; seed " << seed;
    EXPECT_EQ(lc.at(i).log->digest(), lc.at(0).log->digest()) << "node " << i;
  }
}

// Beyond acked_fold_peers live peers a node keeps no peer's marks: the
// all-peers rule never folds, however long the log (age folding does it at
// scale), and nothing held grows with the cluster.
TEST_F(LogSimTest, PeersMarksAreNotKeptInAClusterLargerThanTheAckedFoldBound) {
  const uint64_t seed = Seed(10);
  ReplicatorConfig rcfg;
  rcfg.sync_interval = 2s;
  rcfg.compact_after = 40;
  rcfg.fold_after = std::chrono::hours(24);
  rcfg.acked_fold_peers = 3;  // fewer than the 7 peers each node has
  LogCluster lc(seed, 8, 0.0, rcfg);
  Cluster& c = lc.cluster();
  ASSERT_TRUE(lc.Form(1s)) << "seed " << seed;
  SeededRandom rng(seed);
  std::vector<Entry> acked;
  WriteRandom(lc, rng, 120, 100ms, 1, acked);
  ASSERT_TRUE(c.loop().RunUntil([&] { return lc.AllHold(acked, OracleDigest(acked)); }, 60s)) << "seed " << seed;
  c.loop().RunFor(60s);  // many sync rounds: every node has heard from every peer
  for (int i = 0; i < c.size(); ++i) {
    EXPECT_EQ(lc.at(i).log->retained(), acked.size()) << "node " << i << " folded by the all-peers rule";
    EXPECT_EQ(lc.at(i).replicator->counters().at("entries_compacted"), 0u) << "node " << i;
  }
}

// A change too large for a datagram is announced, then fetched by stream.
TEST_F(LogSimTest, LargeChangesTravelByAnnounceAndStream) {
  const uint64_t seed = Seed(9);
  LogCluster lc(seed, 10, 0.0);
  Cluster& c = lc.cluster();
  ASSERT_TRUE(lc.Form(1s));
  std::string big = "{\"blob\":\"" + std::string(8000, 'x') + "\"}";
  auto e = lc.Write(3, {Op{"services/big", big}});
  ASSERT_TRUE(e.ok());
  std::vector<Entry> acked{*e};
  ASSERT_TRUE(c.loop().RunUntil([&] { return lc.AllHold(acked, OracleDigest(acked)); }, 30s)) << "seed " << seed;
  uint64_t announces = 0;
  for (int i = 0; i < c.size(); ++i) announces += lc.at(i).replicator->counters().at("announces_received");
  EXPECT_GT(announces, 0u);
}

}  // namespace
}  // namespace starling::store
