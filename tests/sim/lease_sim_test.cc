// The coordinator lease on virtual time, checked by an oracle that sees true
// time: never two holders at once, ballots of successive holders grow, and a
// holder appears within a bound whenever a majority of voters can talk.
// Every node's monotonic clock runs at its own rate within the stated drift
// bound. Every test prints its seed; rerun with STARLING_SEED=<seed>.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

#include "lease.h"
#include "starling/membership/user_channels.h"
#include "starling/sim/simulator.h"

namespace starling::node {
namespace {

using sim::Cluster;

uint64_t Seed(uint64_t fallback) {
  if (const char* s = std::getenv("STARLING_SEED")) return std::strtoull(s, nullptr, 10);
  return fallback;
}

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }


struct NodeLease {
  MemoryBallotStore ballots;
  std::unique_ptr<membership::UserChannels> channels;
  std::unique_ptr<MemberlistLeaseNet> net;
  std::unique_ptr<Lease> lease;
};

// Fast timings so that many lease periods fit a run; the margin covers 5 %
// drift, the test drifts clocks by up to 1 %.
LeaseConfig FastLease() {
  LeaseConfig c;
  c.period = std::chrono::seconds(2);
  c.margin = std::chrono::milliseconds(200);
  c.renew_every = std::chrono::milliseconds(600);
  c.attempt_timeout = std::chrono::milliseconds(500);
  c.backoff = std::chrono::milliseconds(300);
  return c;
}

class LeaseCluster {
 public:
  LeaseCluster(uint64_t seed, int n, std::vector<int> voters, LeaseConfig cfg = FastLease(),
               const char* profile = "lan")
      : nodes_(n), voter_idx_(std::move(voters)), cfg_(cfg), c_(seed, sim::ProfileConfig(profile)) {
    for (int i = 0; i < n; ++i) c_.Add();
    for (int v : voter_idx_) voter_names_.push_back(c_.name(v));
    c_.OnBoot([this](int i) { Boot(i); });
    c_.OnCrash([this](int i) { Down(i); });
  }

  bool Form() { return c_.FormAll(std::chrono::milliseconds(100)); }

  Cluster& cluster() { return c_; }
  Lease* lease(int i) { return nodes_[i].lease.get(); }
  const std::vector<int>& voters() const { return voter_idx_; }
  void SetVoters(std::vector<int> idx) {
    voter_idx_ = std::move(idx);
    voter_names_.clear();
    for (int v : voter_idx_) voter_names_.push_back(c_.name(v));
    for (auto& n : nodes_)
      if (n.lease) n.lease->SetVoters(voter_names_);
  }

  // Indices of up nodes that believe they hold the lease now.
  std::vector<int> Holders() {
    std::vector<int> out;
    for (int i = 0; i < c_.size(); ++i)
      if (c_.up(i) && nodes_[i].lease && nodes_[i].lease->IsHolder()) out.push_back(i);
    return out;
  }

  // Some set of up voters, all connected, forms a majority.
  bool MajorityConnected() const {
    const size_t need = voter_idx_.size() / 2 + 1;
    for (int a : voter_idx_) {
      if (!c_.up(a)) continue;
      size_t n = 0;
      for (int b : voter_idx_)
        if (c_.up(b) && c_.Connected(a, b)) ++n;
      if (n >= need) return true;
    }
    return false;
  }

 private:
  void Boot(int i) {
    auto& n = nodes_[i];
    n.channels = std::make_unique<membership::UserChannels>(c_.node(i));
    n.net = std::make_unique<MemberlistLeaseNet>(*n.channels);
    n.lease = std::make_unique<Lease>(c_.name(i), c_.clock(i), c_.random(i), *n.net, n.ballots, cfg_);
    n.channels->On(membership::Channel::kLease,
                   [l = n.lease.get()](const std::string& from, ByteView data) { l->HandlePacket(from, data); });
    n.lease->SetVoters(voter_names_);
    n.lease->Start();
  }
  void Down(int i) {
    auto& n = nodes_[i];
    n.lease.reset();
    n.net.reset();
    n.channels.reset();
  }

  std::vector<NodeLease> nodes_;
  std::vector<int> voter_idx_;
  std::vector<std::string> voter_names_;
  LeaseConfig cfg_;
  Cluster c_;  // last: its teardown calls Down()
};

// What the oracle saw over a run.
struct Oracle {
  uint64_t violations = 0;    // instants with two holders
  uint64_t ballot_drops = 0;  // a new holder with a ballot not above the last one
  Duration worst_wait{0};     // longest majority-connected stretch without a holder
  Duration total{0};
  uint64_t holder_changes = 0;
  std::string first_violation;
};

// Polls every `step` of true time for `length`, with `act` run before each
// poll (the nemesis).
void Watch(LeaseCluster& lc, Duration length, Duration step, Oracle& o, const std::function<void()>& act) {
  Cluster& c = lc.cluster();
  const Time end = c.Now() + length;
  bool waiting = false;
  Time waiting_since{0};
  int last_holder = -1;
  uint64_t last_ballot = 0;
  while (c.Now() < end) {
    act();
    c.loop().RunFor(step);
    o.total += step;
    auto holders = lc.Holders();
    if (holders.size() > 1) {
      if (o.violations++ == 0) {
        o.first_violation = "at " + std::to_string(Seconds(c.Now())) + " s:";
        for (int h : holders) o.first_violation += " " + c.name(h) + "(ballot " + std::to_string(lc.lease(h)->ballot()) + ")";
      }
    }
    if (holders.size() == 1 && holders[0] != last_holder) {
      const uint64_t b = lc.lease(holders[0])->ballot();
      if (b <= last_ballot) ++o.ballot_drops;
      last_ballot = b;
      last_holder = holders[0];
      ++o.holder_changes;
    } else if (holders.size() == 1) {
      last_ballot = std::max(last_ballot, lc.lease(holders[0])->ballot());
    }
    if (!holders.empty() || !lc.MajorityConnected()) {
      waiting = false;
    } else {
      if (!waiting) waiting_since = c.Now() - step;
      waiting = true;
      o.worst_wait = std::max(o.worst_wait, c.Now() - waiting_since);
      if (std::getenv("STARLING_VERBOSE") && c.Now() - waiting_since == std::chrono::milliseconds(std::getenv("STARLING_AT") ? std::atoi(std::getenv("STARLING_AT")) : 6000)) {
        std::printf("  no holder for 6 s at %.2f:\n", Seconds(c.Now()));
        for (int i = 0; i < c.size(); ++i) {
          if (!c.up(i)) {
            std::printf("   %s down\n", c.name(i).c_str());
            continue;
          }
          auto v = lc.lease(i)->view();
          std::string conn;
          for (int j = 0; j < c.size(); ++j) conn += c.Connected(i, j) ? "1" : "0";
          std::printf("   %s q=%d holder=%s ballot=%llu exp=%.2f hb=%llu conn=%s", c.name(i).c_str(), v.quarantined,
                      v.holder ? v.holder->c_str() : "-", (unsigned long long)v.ballot, Seconds(v.expires_in),
                      (unsigned long long)v.highest_ballot, conn.c_str());
          for (const auto& [k, n] : lc.lease(i)->counters()) std::printf(" %s=%llu", k.c_str(), (unsigned long long)n);
          std::printf("\n");
        }
      }
    }
  }
}

class LeaseSimTest : public ::testing::Test {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::err); }
};

// One run of the nemesis on a 5-node cluster whose voters are all five (or
// the first three), clocks drifting within 1 %.
Oracle RunNemesis(uint64_t seed, int voters, Duration length) {
  const LeaseConfig cfg = FastLease();
  std::vector<int> v;
  for (int i = 0; i < voters; ++i) v.push_back(i);
  LeaseCluster lc(seed, 5, v, cfg);
  Cluster& c = lc.cluster();
  SeededRandom rng(seed ^ 0x5eed);
  for (int i = 0; i < 5; ++i) c.SetClockRate(i, 0.99 + 0.02 * static_cast<double>(rng.Uniform(1001)) / 1000.0);
  Oracle o;
  if (!lc.Form()) {
    o.first_violation = "membership did not form";
    ++o.violations;
    return o;
  }
  std::vector<int> down;
  Time next_fault = c.Now();
  Time flap_until{0};
  int flap_a = -1, flap_b = -1;
  auto act = [&] {
    const Time now = c.Now();
    if (flap_a >= 0 && now < flap_until && rng.Uniform(4) == 0) {
      // A flapping link: cut and restored every few hundred ms.
      if (c.Connected(flap_a, flap_b)) {
        c.Partition({{flap_a}, {}});
      } else {
        c.Heal();
      }
    }
    if (now < next_fault) return;
    next_fault = now + Duration(static_cast<int64_t>(500'000 + rng.Uniform(4'000'000)));
    switch (rng.Uniform(8)) {
      case 0: {  // minority or majority partition
        std::vector<int> a, b;
        for (int i = 0; i < 5; ++i) (rng.Uniform(2) ? a : b).push_back(i);
        c.Partition({a, b});
        break;
      }
      case 1:
        c.Heal();
        flap_a = -1;
        break;
      case 2: {  // crash the holder, or anyone
        auto h = lc.Holders();
        int victim = !h.empty() && rng.Uniform(2) ? h[0] : static_cast<int>(rng.Uniform(5));
        if (c.up(victim) && down.size() < 2) {
          c.Crash(victim);
          down.push_back(victim);
        }
        break;
      }
      case 3:
        if (!down.empty()) {
          c.Restart(down.front());
          down.erase(down.begin());
        }
        break;
      case 4:
        c.SetLoss(0.05 * static_cast<double>(rng.Uniform(5)));
        break;
      case 5:
        c.SetDelay(std::chrono::milliseconds(1), std::chrono::milliseconds(1 + rng.Uniform(80)));
        break;
      case 6:
        flap_a = static_cast<int>(rng.Uniform(5));
        flap_b = (flap_a + 1 + static_cast<int>(rng.Uniform(4))) % 5;
        flap_until = now + std::chrono::seconds(5);
        break;
      default:
        break;  // quiet
    }
  };
  Watch(lc, length, std::chrono::milliseconds(10), o, act);
  return o;
}

TEST_F(LeaseSimTest, NeverTwoHoldersAndAHolderWheneverAMajorityTalks) {
  const uint64_t base = Seed(1000);
  const LeaseConfig cfg = FastLease();
  const int seeds = 20;
  const Duration per_seed = std::chrono::seconds(1000);
  Duration total{0}, worst{0};
  uint64_t changes = 0;
  for (int k = 0; k < seeds; ++k) {
    const uint64_t seed = base + static_cast<uint64_t>(k);
    Oracle o = RunNemesis(seed, k % 2 ? 5 : 3, per_seed);
    EXPECT_EQ(o.violations, 0u) << "seed " << seed << ": two holders " << o.first_violation;
    EXPECT_EQ(o.ballot_drops, 0u) << "seed " << seed;
    total += o.total;
    worst = std::max(worst, o.worst_wait);
    if (std::getenv("STARLING_VERBOSE"))
      std::printf("seed %llu: worst wait %.2f s\n", static_cast<unsigned long long>(seed), Seconds(o.worst_wait));
    changes += o.holder_changes;
  }
  const double periods = Seconds(total) / Seconds(cfg.period);
  std::printf("lease: %d seeds, %.0f lease periods of %.1f s, %llu holder changes, clocks within 1 %% drift; "
              "worst wait for a holder while a majority of voters could talk: %.2f s = %.2f periods (seeds %llu..)\n",
              seeds, periods, Seconds(cfg.period), static_cast<unsigned long long>(changes), Seconds(worst),
              Seconds(worst) / Seconds(cfg.period), static_cast<unsigned long long>(base));
  EXPECT_GE(periods, 10000.0);
  // The stated bound: a dead holder's grant still running on the voters (one
  // period), a restarted voter's quarantine (one period), the voters' name
  // order stagger (up to four attempt timeouts) and retries under up to 20 %
  // loss, where a bare majority must answer every phase.
  EXPECT_LE(Seconds(worst), 5.0 * Seconds(cfg.period)) << "seeds from " << base;
}

TEST_F(LeaseSimTest, KilledHolderIsReplacedWithAHigherBallotAndDoesNotReclaimDuringQuarantine) {
  const uint64_t seed = Seed(77);
  const LeaseConfig cfg = FastLease();
  LeaseCluster lc(seed, 5, {0, 1, 2, 3, 4}, cfg);
  Cluster& c = lc.cluster();
  ASSERT_TRUE(lc.Form());
  ASSERT_TRUE(c.loop().RunUntil([&] { return lc.Holders().size() == 1; }, 4 * cfg.period)) << "seed " << seed;
  const int old = lc.Holders()[0];
  const uint64_t old_ballot = lc.lease(old)->ballot();
  c.Crash(old);
  const Time killed = c.Now();
  ASSERT_TRUE(c.loop().RunUntil([&] { return lc.Holders().size() == 1; }, 4 * cfg.period)) << "seed " << seed;
  const int next = lc.Holders()[0];
  EXPECT_NE(next, old);
  EXPECT_GT(lc.lease(next)->ballot(), old_ballot);
  std::printf("holder %s killed; %s holds ballot %llu (was %llu) after %.2f s\n", c.name(old).c_str(),
              c.name(next).c_str(), static_cast<unsigned long long>(lc.lease(next)->ballot()),
              static_cast<unsigned long long>(old_ballot), Seconds(c.Now() - killed));
  c.Restart(old);
  const Time back = c.Now();
  while (c.Now() < back + cfg.period) {
    c.loop().RunFor(std::chrono::milliseconds(10));
    EXPECT_TRUE(lc.lease(old)->view().quarantined || c.Now() >= back + cfg.period);
    ASSERT_FALSE(lc.lease(old)->IsHolder()) << "claimed the lease during its quarantine";
  }
}

// Whether every up node names the same holder, and that holder holds.
std::optional<int> Agreed(LeaseCluster& lc) {
  Cluster& c = lc.cluster();
  std::optional<std::string> name;
  for (int i = 0; i < c.size(); ++i) {
    if (!c.up(i)) continue;
    auto v = lc.lease(i)->view();
    if (!v.holder || (name && *name != *v.holder)) return std::nullopt;
    name = v.holder;
  }
  for (int i = 0; i < c.size(); ++i)
    if (name && c.up(i) && c.name(i) == *name && lc.lease(i)->IsHolder()) return i;
  return std::nullopt;
}

// The seed every node joined through holds the lease and is killed: every
// survivor, voter or not, must come to name the new holder (learned from its
// notices, its grant, or a refusal), over many seeds, with the daemon's local
// timings.
TEST_F(LeaseSimTest, EverySurvivorLearnsTheNewHolderAfterTheSeedHolderDies) {
  const uint64_t base = Seed(4200);
  const int seeds = 60;
  Duration worst{0};
  int seed_was_holder = 0;
  for (int k = 0; k < seeds; ++k) {
    const uint64_t seed = base + static_cast<uint64_t>(k);
    // Five voters of five, or three of five (non-voters learn only by notice).
    std::vector<int> voters = k % 2 ? std::vector<int>{0, 1, 2, 3, 4} : std::vector<int>{0, 1, 2};
    LeaseCluster lc(seed, 5, voters, kLocalLease, "local");
    Cluster& c = lc.cluster();
    ASSERT_TRUE(lc.Form()) << "seed " << seed;
    std::optional<int> holder;
    ASSERT_TRUE(c.loop().RunUntil([&] { return (holder = Agreed(lc)).has_value(); }, 10 * kLocalLease.period))
        << "seed " << seed;
    // Let renewals raise the ballots for a while, as in a cluster that has run.
    c.loop().RunFor(std::chrono::seconds(5 + k % 7));
    ASSERT_TRUE(c.loop().RunUntil([&] { return (holder = Agreed(lc)).has_value(); }, 10 * kLocalLease.period))
        << "seed " << seed;
    seed_was_holder += *holder == 0;
    c.Crash(*holder);
    const Time killed = c.Now();
    std::optional<int> next;
    const bool agreed = c.loop().RunUntil(
        [&] { return (next = Agreed(lc)).has_value(); }, 10 * kLocalLease.period);
    std::string views;
    for (int i = 0; i < c.size(); ++i) {
      if (!c.up(i)) continue;
      auto v = lc.lease(i)->view();
      views += " " + c.name(i) + "=" + (v.holder ? *v.holder : "-") + "@" + std::to_string(v.ballot);
    }
    ASSERT_TRUE(agreed) << "seed " << seed << ": survivors never agreed after " << c.name(*holder)
                        << " died:" << views;
    EXPECT_NE(*next, *holder);
    worst = std::max(worst, c.Now() - killed);
  }
  std::printf("seed holder killed in %d of %d runs; every survivor named the new holder within %.2f s at worst "
              "(lease period %.1f s; seeds %llu..)\n",
              seed_was_holder, seeds, Seconds(worst), Seconds(kLocalLease.period),
              static_cast<unsigned long long>(base));
  EXPECT_GE(seed_was_holder, seeds / 2);
}

TEST_F(LeaseSimTest, OneAndTwoVoterClustersWork) {
  const uint64_t seed = Seed(5);
  const LeaseConfig cfg = FastLease();
  for (int n : {1, 2}) {
    std::vector<int> v;
    for (int i = 0; i < n; ++i) v.push_back(i);
    LeaseCluster lc(seed, n, v, cfg);
    ASSERT_TRUE(lc.Form());
    EXPECT_TRUE(lc.cluster().loop().RunUntil([&] { return lc.Holders().size() == 1; }, 4 * cfg.period))
        << n << " voters, seed " << seed;
  }
}

// Voters die one at a time; after each is gone for good, the holder's
// replacement logic (here: the test, as the holder would) removes it, one
// voter at a time. The last node standing still obtains the lease.
TEST_F(LeaseSimTest, ShrinksOneVoterAtATimeToASingleNode) {
  const uint64_t seed = Seed(21);
  const LeaseConfig cfg = FastLease();
  LeaseCluster lc(seed, 5, {0, 1, 2, 3, 4}, cfg);
  Cluster& c = lc.cluster();
  ASSERT_TRUE(lc.Form());
  std::vector<int> alive = {0, 1, 2, 3, 4};
  SeededRandom rng(seed);
  while (alive.size() > 1) {
    ASSERT_TRUE(c.loop().RunUntil([&] { return lc.Holders().size() == 1; }, 6 * cfg.period))
        << alive.size() << " voters; seed " << seed;
    const int victim = alive[rng.Uniform(alive.size())];
    c.Crash(victim);
    alive.erase(std::find(alive.begin(), alive.end(), victim));
    c.loop().RunFor(2 * cfg.period);
    lc.SetVoters(alive);
  }
  EXPECT_TRUE(c.loop().RunUntil([&] { return lc.Holders().size() == 1; }, 6 * cfg.period)) << "seed " << seed;
  EXPECT_EQ(lc.Holders(), alive);
}

TEST(LeaseCodec, RoundTripAndBadBytes) {
  LeaseMsg m;
  m.kind = LeaseKind::kPromise;
  m.from = "n1";
  m.round = 42;
  m.ok = true;
  m.promised = 42;
  m.owner = "n3";
  m.duration_ms = 1500;
  m.accepted_round = 40;
  auto back = DecodeLease(EncodeLease(m));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->from, "n1");
  EXPECT_EQ(back->owner, "n3");
  EXPECT_EQ(back->round, 42u);
  EXPECT_EQ(back->accepted_round, 40u);
  EXPECT_EQ(back->kind, LeaseKind::kPromise);
  Bytes good = EncodeLease(m);
  SeededRandom rng(1);
  for (int i = 0; i < 3000; ++i) {
    Bytes b = good;
    b[rng.Uniform(b.size())] ^= static_cast<uint8_t>(1 + rng.Uniform(255));
    auto r = DecodeLease(b);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
    }
  }
  EXPECT_FALSE(DecodeLease(Bytes(7, 0)).ok());
  EXPECT_FALSE(DecodeLease(Bytes{}).ok());
}

}  // namespace
}  // namespace starling::node
