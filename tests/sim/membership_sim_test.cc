// Membership on virtual time: whole clusters, faults and timing bounds.
// Every test prints its seed; rerun with STARLING_SEED=<seed> to replay.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdlib>

#include "starling/sim/simulator.h"

namespace starling::sim {
namespace {

using namespace std::chrono_literals;
using membership::EventType;
using membership::MemberStatus;

uint64_t Seed(uint64_t fallback) {
  if (const char* s = std::getenv("STARLING_SEED")) return std::strtoull(s, nullptr, 10);
  return fallback;
}

membership::Config Profile(const char* name) {
  membership::Config c;
  c.timing = *membership::ProfileTiming(name);
  return c;
}

class SimTest : public ::testing::Test {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::err); }
};

// Starts n nodes joining node 0, spread over `spread`.
void JoinWave(Cluster& c, int n, Duration spread) {
  for (int i = 0; i < n; ++i) c.Add();
  c.Start(0);
  for (int i = 1; i < n; ++i) c.loop().At(c.Now() + spread * i / n, [&c, i] { c.StartAndJoin(i, 0); });
  c.loop().RunFor(spread);
}

// Starts node i and joins it through node 0 once (no retry); the outcome
// after `wait`, or nullopt when the join has not ended by then.
std::optional<Status> StartAndJoinOnce(Cluster& c, int i, Duration wait) {
  c.Start(i);
  auto result = std::make_shared<std::optional<Status>>();
  c.node(i).Join({c.addr(0)}, [result](Result<int> r) { *result = r.status(); });
  c.loop().RunFor(wait);
  return *result;
}

// No up node lists node i any more.
bool NobodyLists(Cluster& c, int i) {
  for (int j = 0; j < c.size(); ++j)
    if (c.up(j) && c.node(j).StatusOf(c.name(i)).has_value()) return false;
  return true;
}

// The longest a crashed member can take to be declared failed everywhere:
// up to one probe period until someone probes it (with n probers it is
// almost always far less), one period for the probe to fail and one for
// the second probe an alive member gets before it is suspected, the full
// unconfirmed suspicion timeout, and a few gossip rounds to spread the news.
Duration SuspicionBound(const membership::Config& cfg, int n) {
  const auto& t = cfg.timing;
  const double scale = std::max(1.0, std::log10(static_cast<double>(n)));
  auto min = std::chrono::duration_cast<Duration>(t.probe_interval * t.suspicion_mult * scale);
  return 3 * t.probe_interval + min * t.suspicion_max_timeout_mult + 20 * t.gossip_interval;
}

TEST_F(SimTest, SmallClusterConvergesAndSameSeedReplaysExactly) {
  auto run = [](uint64_t seed) {
    Cluster c(seed, Profile("lan"));
    uint64_t trace = 1469598103934665603ULL;  // FNV-1a over the event stream
    c.OnEvent([&](int i, const membership::Event& e) {
      for (uint64_t v : {uint64_t(i), uint64_t(e.type), uint64_t(c.Now().count()), e.member.incarnation}) {
        trace = (trace ^ v) * 1099511628211ULL;
      }
    });
    JoinWave(c, 10, 1s);
    bool ok = c.loop().RunUntil([&] { return c.Converged(); }, 60s);
    c.loop().RunFor(10s);
    return std::make_pair(ok, trace);
  };
  const uint64_t seed = Seed(11);
  auto a = run(seed);
  auto b = run(seed);
  auto other = run(seed + 1);
  EXPECT_TRUE(a.first) << "seed " << seed;
  EXPECT_EQ(a.second, b.second) << "same seed, different run: seed " << seed;
  EXPECT_NE(a.second, other.second) << "different seeds gave identical runs";
}

TEST_F(SimTest, ThousandNodesJoinedThroughOneSeedConverge) {
  const uint64_t seed = Seed(1000);
  auto cfg = Profile("lan");
  Cluster c(seed, cfg);
  JoinWave(c, 1000, 10s);
  const Time t0 = c.Now();
  bool ok = c.loop().RunUntil([&] { return c.Converged(); }, 600s, 1s);
  std::printf("1000 nodes: converged=%d %.1f s after the last join (seed %llu)\n", ok,
              std::chrono::duration<double>(c.Now() - t0).count(), static_cast<unsigned long long>(seed));
  ASSERT_TRUE(ok) << "seed " << seed;
  for (int i = 0; i < c.size(); ++i) {
    auto counts = c.node(i).Counts();
    ASSERT_EQ(counts.alive, 1000u) << "node " << i;
  }
}

TEST_F(SimTest, NoHealthyNodeDeclaredFailedUnderFivePercentLoss) {
  const uint64_t seed = Seed(5);
  Cluster c(seed, Profile("lan"));
  JoinWave(c, 64, 2s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 120s)) << "seed " << seed;
  uint64_t failed = 0, suspected = 0;
  c.OnEvent([&](int, const membership::Event& e) {
    if (e.type == EventType::kFailed) ++failed;
    if (e.type == EventType::kSuspect) ++suspected;
  });
  c.SetLoss(0.05);
  c.loop().RunFor(600s);
  std::printf("5%% loss, 64 nodes, 10 min: %llu suspicions, %llu failures (seed %llu)\n",
              static_cast<unsigned long long>(suspected), static_cast<unsigned long long>(failed),
              static_cast<unsigned long long>(seed));
  EXPECT_EQ(failed, 0u) << "healthy nodes declared failed; seed " << seed;
  EXPECT_GT(c.net_stats().packets_dropped, 0u) << "the loss was not applied";
  c.SetLoss(0);
  EXPECT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
}

// Sums a counter over the up nodes.
uint64_t Total(Cluster& c, const std::string& counter) {
  uint64_t n = 0;
  for (int i = 0; i < c.size(); ++i)
    if (c.up(i))
      if (auto it = c.node(i).counters().find(counter); it != c.node(i).counters().end()) n += it->second;
  return n;
}

// Under loss a probe and its relays all fail now and then for a member that
// is fine; a second probe through other relays settles most of those
// without a suspicion, whose gossip every member would carry.
TEST_F(SimTest, AnAliveMemberIsProbedTwiceBeforeItIsSuspected) {
  const uint64_t seed = Seed(8);
  Cluster c(seed, Profile("lan"));
  JoinWave(c, 64, 2s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 120s)) << "seed " << seed;
  const uint64_t repeated0 = Total(c, "probes_repeated"), failures0 = Total(c, "probe_failures");
  c.SetLoss(0.10);
  c.loop().RunFor(300s);
  const uint64_t repeated = Total(c, "probes_repeated") - repeated0;
  // Every failed probe round counts, the first of an alive member's two too:
  // what is left failed twice in a row (or was of a member already suspect).
  const uint64_t twice = Total(c, "probe_failures") - failures0 - repeated;
  std::printf("10%% loss, 64 nodes, 5 min: %llu first probes failed, %llu failed twice (seed %llu)\n",
              static_cast<unsigned long long>(repeated), static_cast<unsigned long long>(twice),
              static_cast<unsigned long long>(seed));
  EXPECT_GT(repeated, 20u);
  EXPECT_LE(twice * 10, repeated);
  c.SetLoss(0);
  EXPECT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
}

// A quiet cluster's periodic push-pulls carry a digest of the member table,
// not the table: the tables agree, so the answer is "same".
TEST_F(SimTest, QuietPushPullsExchangeDigestsNotTables) {
  const uint64_t seed = Seed(9);
  Cluster c(seed, Profile("lan"));
  JoinWave(c, 40, 1s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 120s)) << "seed " << seed;
  c.loop().RunFor(120s);  // the join wave's churn push-pulls are over
  const uint64_t sent0 = Total(c, "push_pulls_sent"), same0 = Total(c, "push_pulls_same");
  const uint64_t bytes0 = Total(c, "stream_bytes_sent");
  c.loop().RunFor(600s);
  const uint64_t sent = Total(c, "push_pulls_sent") - sent0, same = Total(c, "push_pulls_same") - same0;
  const uint64_t bytes = Total(c, "stream_bytes_sent") - bytes0;
  std::printf("40 nodes, 10 quiet minutes: %llu push-pulls, %llu answered same, %llu stream bytes\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(same),
              static_cast<unsigned long long>(bytes));
  ASSERT_GT(sent, 100u);
  // Counted on both sides: the asker's and the responder's.
  EXPECT_EQ(same, 2 * sent);
  // A table of 40 members is kilobytes; a digest and its answer are a few dozen bytes.
  EXPECT_LT(bytes / sent, 400u);
  // A changed tag makes the tables differ until the news is everywhere; the
  // cluster still agrees on it.
  c.node(7).SetTags({{"role", "db"}});
  EXPECT_TRUE(c.loop().RunUntil(
      [&] {
        for (int i = 0; i < c.size(); ++i) {
          auto m = c.node(i).Members();
          auto it = std::find_if(m.begin(), m.end(), [&](const auto& v) { return v.name == c.name(7); });
          if (it == m.end() || it->tags.count("role") == 0) return false;
        }
        return true;
      },
      30s));
}

TEST_F(SimTest, CrashedNodeDeclaredFailedWithinSuspicionBound) {
  const uint64_t seed = Seed(77);
  auto cfg = Profile("lan");
  const int n = 50;
  Cluster c(seed, cfg);
  JoinWave(c, n, 2s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 120s));
  const int victim = 17;
  c.Crash(victim);
  const Time crashed = c.Now();
  // Not before a probe could time out and the shortest suspicion expire.
  const double scale = std::log10(static_cast<double>(n));
  const auto earliest =
      cfg.timing.probe_timeout + std::chrono::duration_cast<Duration>(cfg.timing.probe_interval *
                                                                      cfg.timing.suspicion_mult * scale);
  bool any_early = false;
  c.OnEvent([&](int, const membership::Event& e) {
    if (e.type == EventType::kFailed && e.member.name == c.name(victim) && c.Now() - crashed < earliest)
      any_early = true;
  });
  const Duration bound = SuspicionBound(cfg, n);
  bool ok = c.loop().RunUntil([&] { return c.AllSee(victim, MemberStatus::kFailed); }, bound, 10ms);
  std::printf("crash detected by all %d nodes after %.2f s (bound %.1f s, earliest %.1f s)\n", n - 1,
              std::chrono::duration<double>(c.Now() - crashed).count(), std::chrono::duration<double>(bound).count(),
              std::chrono::duration<double>(earliest).count());
  EXPECT_TRUE(ok) << "not every node saw the crash within the bound; seed " << seed;
  EXPECT_FALSE(any_early) << "declared failed sooner than the protocol allows";
  // Nobody else was hurt.
  for (int i = 0; i < n; ++i) {
    if (i == victim) continue;
    EXPECT_TRUE(c.AllSee(i, MemberStatus::kAlive)) << "node " << i;
  }
}

TEST_F(SimTest, HealedPartitionMergesIntoOneView) {
  const uint64_t seed = Seed(3);
  auto cfg = Profile("lan");
  const int n = 20;
  Cluster c(seed, cfg);
  JoinWave(c, n, 1s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
  std::vector<int> left, right;
  for (int i = 0; i < n; ++i) (i < 12 ? left : right).push_back(i);
  c.Partition({left, right});
  bool split = c.loop().RunUntil(
      [&] {
        for (int i : right)
          for (int j : left)
            if (c.node(j).StatusOf(c.name(i)) != MemberStatus::kFailed) return false;
        for (int i : left)
          for (int j : right)
            if (c.node(j).StatusOf(c.name(i)) != MemberStatus::kFailed) return false;
        return true;
      },
      180s);
  ASSERT_TRUE(split) << "each side should see the other failed; seed " << seed;
  c.Heal();
  const Time healed = c.Now();
  bool merged = c.loop().RunUntil([&] { return c.Converged(); }, 600s, 1s);
  std::printf("partition 12/8 merged %.1f s after healing (seed %llu)\n",
              std::chrono::duration<double>(c.Now() - healed).count(), static_cast<unsigned long long>(seed));
  EXPECT_TRUE(merged) << "seed " << seed;
}

// One node's message handling is slow. Count failure declarations of healthy
// nodes with and without Lifeguard under the same seed.
uint64_t FalseFailuresWithSlowNode(bool lifeguard, uint64_t seed, uint64_t* suspicions) {
  auto cfg = Profile("lan");
  cfg.lifeguard = lifeguard;
  cfg.last_chance_probe = false;  // measure Lifeguard alone
  const int n = 24;
  Cluster c(seed, cfg);
  JoinWave(c, n, 1s);
  if (!c.loop().RunUntil([&] { return c.Converged(); }, 60s)) return ~0ULL;
  const int slow = 5;
  uint64_t failed = 0;
  *suspicions = 0;
  // Any node's verdict on a healthy node counts, the slow node's included;
  // verdicts on the slow node itself do not.
  c.OnEvent([&](int, const membership::Event& e) {
    if (e.member.name == c.name(slow)) return;
    if (e.type == EventType::kFailed) ++failed;
    if (e.type == EventType::kSuspect) ++*suspicions;
  });
  c.SetSlow(slow, 3s);
  c.loop().RunFor(600s);
  return failed;
}

TEST_F(SimTest, LifeguardCutsFalseFailuresCausedByASlowNode) {
  const uint64_t seed = Seed(21);
  uint64_t on = 0, off = 0, sus_on = 0, sus_off = 0;
  // Three seeds each, summed: a single run's count is small and noisy.
  for (uint64_t s = seed; s < seed + 3; ++s) {
    uint64_t a = 0, b = 0;
    on += FalseFailuresWithSlowNode(true, s, &a);
    off += FalseFailuresWithSlowNode(false, s, &b);
    sus_on += a;
    sus_off += b;
  }
  std::printf("slow node, 3 x 10 min: false failures of healthy nodes: lifeguard on %llu, off %llu "
              "(suspicions %llu vs %llu; seeds %llu..%llu)\n",
              static_cast<unsigned long long>(on), static_cast<unsigned long long>(off),
              static_cast<unsigned long long>(sus_on), static_cast<unsigned long long>(sus_off),
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed + 2));
  EXPECT_LT(on, off) << "seed " << seed;
  EXPECT_LT(sus_on, sus_off) << "seed " << seed;
}

TEST_F(SimTest, LeaveShowsLeftEverywhereAndNeverFailed) {
  const uint64_t seed = Seed(8);
  Cluster c(seed, Profile("lan"));
  JoinWave(c, 16, 1s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
  const int leaver = 9;
  bool seen_failed = false;
  c.OnEvent([&](int, const membership::Event& e) {
    if (e.member.name == c.name(leaver) && e.type == EventType::kFailed) seen_failed = true;
  });
  c.Leave(leaver);
  EXPECT_TRUE(c.loop().RunUntil([&] { return c.AllSee(leaver, MemberStatus::kLeft); }, 10s)) << "seed " << seed;
  c.loop().RunFor(60s);
  EXPECT_TRUE(c.AllSee(leaver, MemberStatus::kLeft));
  EXPECT_FALSE(seen_failed) << "a leaving node was seen failed";
}

TEST_F(SimTest, CrashedNodeRestartsAndRejoinsFromKnownMembers) {
  const uint64_t seed = Seed(13);
  Cluster c(seed, Profile("local"));
  JoinWave(c, 10, 1s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
  c.Crash(4);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.AllSee(4, MemberStatus::kFailed); }, 60s));
  c.Restart(4);  // no seed: uses what it knew
  EXPECT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s)) << "seed " << seed;
  EXPECT_GT(c.node(0).Members()[4].incarnation >> 32, 1u) << "incarnation generation did not advance";
}

TEST_F(SimTest, ForceLeaveMarksFailedMemberLeftAndPruneErasesIt) {
  const uint64_t seed = Seed(17);
  Cluster c(seed, Profile("local"));
  JoinWave(c, 8, 1s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
  EXPECT_EQ(c.node(0).ForceLeave(c.name(3), false).code(), Status::Code::kConflict) << "alive member";
  EXPECT_EQ(c.node(0).ForceLeave("nobody", false).code(), Status::Code::kNotFound);
  EXPECT_EQ(c.node(0).ForceLeave(c.name(0), false).code(), Status::Code::kInvalidArgument);
  c.Crash(3);
  c.Crash(5);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.AllSee(3, MemberStatus::kFailed) && c.AllSee(5, MemberStatus::kFailed); },
                                60s));
  ASSERT_TRUE(c.node(0).ForceLeave(c.name(3), false).ok());
  EXPECT_TRUE(c.loop().RunUntil([&] { return c.AllSee(3, MemberStatus::kLeft); }, 10s));
  ASSERT_TRUE(c.node(1).ForceLeave(c.name(5), true).ok());
  EXPECT_TRUE(c.loop().RunUntil([&] { return NobodyLists(c, 5); }, 10s)) << "pruned member still listed";
}

TEST_F(SimTest, FailedMembersAreReapedAfterTheTimeout) {
  auto cfg = Profile("local");
  cfg.reap_timeout = 120s;
  Cluster c(Seed(19), cfg);
  JoinWave(c, 6, 1s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
  c.Crash(2);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.AllSee(2, MemberStatus::kFailed); }, 60s));
  c.loop().RunFor(cfg.reap_timeout - 31s);  // reap checks run every reap_timeout/4 at most 15 s
  EXPECT_TRUE(c.AllSee(2, MemberStatus::kFailed)) << "reaped too early";
  EXPECT_TRUE(c.loop().RunUntil([&] { return NobodyLists(c, 2); }, 60s)) << "not reaped after the timeout";
}

TEST_F(SimTest, SecondNodeClaimingALiveNameIsRefused) {
  Cluster c(Seed(23), Profile("local"));
  JoinWave(c, 4, 1s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
  auto cfg = Profile("local");
  cfg.name = c.name(2);  // same name, different address
  int imposter = c.Add(cfg);
  std::optional<Status> result = StartAndJoinOnce(c, imposter, 5s);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->code(), Status::Code::kConflict) << result->ToString();
  EXPECT_NE(result->message().find(c.name(2)), std::string::npos) << result->message();
  EXPECT_EQ(c.node(0).Members().size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.node(i).StatusOf(c.name(2)), MemberStatus::kAlive);
}

TEST_F(SimTest, TagChangesReachEveryNode) {
  Cluster c(Seed(29), Profile("local"));
  JoinWave(c, 12, 1s);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
  c.node(7).SetTags({{"role", "db"}});
  EXPECT_TRUE(c.loop().RunUntil(
      [&] {
        for (int i = 0; i < c.size(); ++i) {
          for (const auto& m : c.node(i).Members())
            if (m.name == c.name(7) && (m.tags.count("role") == 0 || m.tags.at("role") != "db")) return false;
        }
        return true;
      },
      10s));
}

TEST_F(SimTest, ClustersWithDifferentNamesNeverMerge) {
  auto a_cfg = Profile("local");
  a_cfg.cluster = "alpha";
  Cluster c(Seed(31), a_cfg);
  JoinWave(c, 4, 1s);
  auto b_cfg = Profile("local");
  b_cfg.cluster = "beta";
  int stranger = c.Add(b_cfg);
  c.Start(stranger);
  std::optional<Status> result;
  c.node(stranger).Join({c.addr(0)}, [&](Result<int> r) { result = r.status(); });
  c.loop().RunFor(30s);
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->ok());
  EXPECT_EQ(c.node(0).Counts().alive, 4u);
  EXPECT_EQ(c.node(stranger).Counts().alive, 1u);
  EXPECT_GT(c.node(0).counters().at("bad_packets.cluster"), 0u);
}

// A config with its own keyring holding `keys` (primary first).
membership::Config Keyed(const std::vector<membership::Key>& keys) {
  auto cfg = Profile("local");
  cfg.keyring = std::make_shared<membership::Keyring>();
  for (const auto& k : keys) EXPECT_TRUE(cfg.keyring->Install(k).ok());
  return cfg;
}

// n nodes, each with its own keyring holding `key`.
std::vector<std::shared_ptr<membership::Keyring>> AddKeyed(Cluster& c, int n, const membership::Key& key) {
  std::vector<std::shared_ptr<membership::Keyring>> rings;
  for (int i = 0; i < n; ++i) {
    auto cfg = Keyed({key});
    rings.push_back(cfg.keyring);
    c.Add(cfg);
  }
  return rings;
}

uint64_t Counter(Cluster& c, int i, const std::string& name) { return c.node(i).counters().at(name); }

// A node of a release that understands protocol [min, max] and speaks `speak`.
membership::Config Release(const std::string& release, uint16_t min, uint16_t max, uint16_t speak) {
  auto cfg = Profile("local");
  cfg.release = release;
  cfg.protocol = membership::Protocol{min, max, speak};
  return cfg;
}

TEST_F(SimTest, MixedReleasesRunTogetherAndEveryMemberKnowsWhatTheOthersRun) {
  // Mid-upgrade: two nodes of the next release (which understands one more
  // version but speaks the old one), one told to speak an older version.
  Cluster c(Seed(37), Profile("local"));
  c.Add(Release("0.1.0", 1, 2, 2));
  c.Add(Release("0.1.0", 1, 2, 2));
  c.Add(Release("0.2.0", 1, 3, 2));
  c.Add(Release("0.2.0", 1, 3, 2));
  c.Add(Release("0.1.0", 1, 2, 1));
  c.Start(0);
  for (int i = 1; i < c.size(); ++i) c.StartAndJoin(i, i - 1);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
  for (int i = 0; i < c.size(); ++i) {
    for (const auto& m : c.node(i).Members()) {
      SCOPED_TRACE(c.name(i) + " on " + m.name);
      const bool next = m.name == c.name(2) || m.name == c.name(3);
      EXPECT_EQ(m.release, next ? "0.2.0" : "0.1.0");
      EXPECT_EQ(m.protocol_min, 1);
      EXPECT_EQ(m.protocol_max, next ? 3 : 2);
      EXPECT_EQ(m.protocol_cur, m.name == c.name(4) ? 1 : 2);
    }
  }
}

TEST_F(SimTest, AJoinAcrossProtocolsThatDoNotOverlapIsRefusedOnBothSides) {
  struct Case {
    const char* what;
    membership::Config cluster, joiner;
    std::vector<std::string> named;  // in the joiner's error
  };
  std::vector<Case> cases = {
      // The cluster moved on to 3 (every member restarted with --protocol 3);
      // a node of the old release cannot read it.
      {"old release into a cluster speaking 3", Release("0.2.0", 1, 3, 3), Release("0.1.0", 1, 2, 2),
       {"understands 1-2 and speaks 2", "understands 1-3 and speaks 3"}},
      // A node told to speak 3 into a cluster of the old release: refused
      // at the envelope, with the reason sent back.
      {"a node speaking 3 into an old cluster", Release("0.1.0", 1, 2, 2), Release("0.2.0", 1, 3, 3),
       {"speaks protocol 3", "understands protocol 1-2 and speaks 2"}},
  };
  uint64_t seed = 41;
  for (auto& k : cases) {
    SCOPED_TRACE(k.what);
    Cluster c(Seed(seed++), k.cluster);
    JoinWave(c, 3, 1s);
    ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
    const int joiner = c.Add(k.joiner);
    std::optional<Status> result = StartAndJoinOnce(c, joiner, 10s);
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->code(), Status::Code::kConflict) << result->ToString();
    for (const auto& text : k.named) EXPECT_NE(result->message().find(text), std::string::npos) << result->message();
    if (std::getenv("STARLING_VERBOSE")) std::printf("%s\n", result->message().c_str());
    EXPECT_GT(Counter(c, 0, "incompatible_members"), 0u) << "the seed refused it too";
    for (int i = 0; i < 3; ++i) EXPECT_FALSE(c.node(i).StatusOf(c.name(joiner)).has_value());
    EXPECT_EQ(c.node(joiner).Counts().alive, 1u);
  }
}

TEST_F(SimTest, ANodeSpeakingAnOlderProtocolJoinsAndItsNewerPeersAccept) {
  // Serf's upgrade path: the new release told to speak the old version
  // joins the old cluster, and the old ones join a cluster of new nodes
  // that still speak their version.
  Cluster c(Seed(43), Release("0.1.0", 1, 2, 2));
  JoinWave(c, 3, 1s);
  const int told = c.Add(Release("0.2.0", 1, 3, 1));
  c.StartAndJoin(told, 0);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 60s));
  EXPECT_EQ(Counter(c, 0, "incompatible_members"), 0u);
}


TEST_F(SimTest, EncryptedClusterForms) {
  const auto key = membership::Keyring::Generate();
  Cluster c(Seed(37), Profile("local"));
  AddKeyed(c, 3, key);
  ASSERT_TRUE(c.FormAll(1s, 30s));
  c.loop().RunFor(20s);  // probes, gossip and a push-pull or two, all sealed
  EXPECT_TRUE(c.Converged());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Counter(c, i, "bad_packets.auth"), 0u);
    EXPECT_EQ(Counter(c, i, "bad_packets.unencrypted"), 0u);
    EXPECT_GT(Counter(c, i, "messages_received.ack"), 0u);
  }
}

TEST_F(SimTest, NodeWithWrongKeyOrNoneIsRefusedAndCounted) {
  const auto key = membership::Keyring::Generate();
  Cluster c(Seed(41), Profile("local"));
  AddKeyed(c, 3, key);
  ASSERT_TRUE(c.FormAll(1s, 30s));

  struct Case {
    const char* what;
    membership::Config cfg;
    const char* counter;    // counted by the seed
    const char* why;        // in the joiner's error
  };
  std::vector<Case> cases = {{"wrong key", Keyed({membership::Keyring::Generate()}), "bad_packets.auth", "key"},
                             {"no key", Profile("local"), "bad_packets.unencrypted", "encrypted"}};
  for (auto& tc : cases) {
    SCOPED_TRACE(tc.what);
    const uint64_t before = Counter(c, 0, tc.counter);
    int stranger = c.Add(tc.cfg);
    c.Start(stranger);
    std::optional<Status> result;
    c.node(stranger).Join({c.addr(0)}, [&](Result<int> r) { result = r.status(); });
    c.loop().RunFor(20s);
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->code(), Status::Code::kUnavailable) << result->ToString();
    EXPECT_NE(result->message().find(tc.why), std::string::npos) << result->message();
    EXPECT_GT(Counter(c, 0, tc.counter), before);
    EXPECT_EQ(c.node(stranger).Counts().alive, 1u);
    for (int i = 0; i < 3; ++i) EXPECT_FALSE(c.node(i).StatusOf(c.name(stranger)).has_value());
    c.Crash(stranger);
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.node(i).Counts().alive, 3u);
}

TEST_F(SimTest, KeyRotationKeepsEveryMemberAlive) {
  const auto old_key = membership::Keyring::Generate();
  const auto new_key = membership::Keyring::Generate();
  Cluster c(Seed(43), Profile("local"));
  auto rings = AddKeyed(c, 5, old_key);
  ASSERT_TRUE(c.FormAll(1s, 30s));
  c.SetLoss(0.01);
  int bad_events = 0;
  c.OnEvent([&](int, const membership::Event& e) {
    if (e.type == EventType::kFailed || e.type == EventType::kSuspect) ++bad_events;
  });
  // One node at a time, a few seconds apart, as the fan-out of `starling
  // keys` reaches them: nodes spend a while on different primaries.
  auto each = [&](const std::function<void(membership::Keyring&)>& step) {
    for (auto& ring : rings) {
      step(*ring);
      c.loop().RunFor(3s);
    }
  };
  each([&](membership::Keyring& r) { ASSERT_TRUE(r.Install(new_key).ok()); });
  each([&](membership::Keyring& r) { ASSERT_TRUE(r.Use(new_key).ok()); });
  each([&](membership::Keyring& r) { ASSERT_TRUE(r.Remove(old_key).ok()); });
  c.loop().RunFor(30s);
  EXPECT_EQ(bad_events, 0);
  EXPECT_TRUE(c.Converged());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Counter(c, i, "bad_packets.auth"), 0u);
    EXPECT_EQ(rings[i]->keys().size(), 1u);
  }
}

TEST_F(SimTest, TamperedPacketIsDroppedAndCounted) {
  const auto key = membership::Keyring::Generate();
  Cluster c(Seed(47), Profile("local"));
  auto rings = AddKeyed(c, 2, key);
  ASSERT_TRUE(c.FormAll(1s, 30s));
  // Authentication comes before decoding, so the content need not be a
  // real packet: what matters is that node 0's keyring opens it untouched.
  const Bytes content = {1, 2, 3, 4, 5, 6, 7, 8};
  Bytes sealed = rings[1]->Encrypt(content, c.clock(1).WallMicros());
  ASSERT_TRUE(rings[0]->Decrypt(sealed).has_value());
  ASSERT_EQ(rings[0]->Decrypt(sealed)->clear, content);
  for (size_t at : {size_t{2}, membership::Keyring::kHeaderBytes + 3, sealed.size() - 1}) {
    Bytes tampered = sealed;
    tampered[at] ^= 0x40;
    const uint64_t auth = Counter(c, 0, "bad_packets.auth");
    const uint64_t clear = Counter(c, 0, "bad_packets.unencrypted");
    c.node(0).HandlePacket(c.addr(1), tampered);
    // Flipping a header byte makes the frame look clear; either way dropped.
    EXPECT_EQ(Counter(c, 0, "bad_packets.auth") + Counter(c, 0, "bad_packets.unencrypted"), auth + clear + 1)
        << "byte " << at;
  }
  c.loop().RunFor(5s);
  EXPECT_TRUE(c.Converged());
}

}  // namespace
}  // namespace starling::sim
