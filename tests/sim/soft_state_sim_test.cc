// Per-node soft state on virtual time: reports reach every node, the newest
// wins, a restarted node's reports outrank its old ones, and nobody can
// report for another node.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "soft_state.h"
#include "starling/membership/user_channels.h"
#include "starling/sim/simulator.h"

namespace starling::node {
namespace {

using namespace std::chrono_literals;

struct Stack {
  std::unique_ptr<membership::UserChannels> channels;
  std::unique_ptr<SoftState> soft;
};

TEST(SoftStateSim, ReportsSpreadAndOnlyTheNodeItselfMayReport) {
  spdlog::set_level(spdlog::level::err);
  std::vector<Stack> nodes(6);
  std::vector<uint32_t> generation(6, 0);
  // After the stacks: its teardown detaches them.
  sim::Cluster c(31, sim::ProfileConfig("lan"), sim::NetworkOptions{.loss = 0.05});
  for (int i = 0; i < 6; ++i) c.Add();
  c.OnBoot([&](int i) {
    nodes[i].channels = std::make_unique<membership::UserChannels>(c.node(i));
    nodes[i].soft = std::make_unique<SoftState>(c.name(i), ++generation[i], c.clock(i), *nodes[i].channels, 2s);
    nodes[i].soft->Start();
  });
  c.OnCrash([&](int i) {
    nodes[i].soft.reset();
    nodes[i].channels.reset();
  });
  ASSERT_TRUE(c.FormAll(1s));
  nodes[2].soft->Update([](NodeReport& r) {
    r.applied_revision = "abcdef012345";
    r.healthy = true;
    r.phase = "idle";
    r.outputs = {{"db.url", "postgres://n2"}};
  });
  auto everyone_sees = [&](const std::string& rev) {
    for (int i = 0; i < 6; ++i) {
      if (!c.up(i)) continue;
      auto r = nodes[i].soft->Get(c.name(2));
      if (!r || r->applied_revision != rev) return false;
    }
    return true;
  };
  ASSERT_TRUE(c.loop().RunUntil([&] { return everyone_sees("abcdef012345"); }, 30s));
  EXPECT_EQ(nodes[5].soft->Get(c.name(2))->outputs.at("db.url"), "postgres://n2");

  // Node 4 claims to speak for node 2: dropped everywhere.
  NodeReport forged = *nodes[4].soft->Get(c.name(2));
  forged.version += 1000;
  forged.healthy = false;
  for (int i = 0; i < 6; ++i)
    if (i != 4) nodes[4].channels->SendPacket(membership::Channel::kNodeState, c.addr(i), EncodeReport(forged));
  c.loop().RunFor(2s);
  for (int i : {0, 1, 3, 5}) {
    EXPECT_TRUE(nodes[i].soft->Get(c.name(2))->healthy) << "node " << i << " took a forged report";
    EXPECT_GE(nodes[i].soft->rejected(), 1u);
  }

  // A restarted node starts a new generation: its fresh report wins even
  // though its counter starts again.
  c.Crash(2);
  c.Restart(2);
  nodes[2].soft->Update([](NodeReport& r) { r.applied_revision = "999999999999"; });
  EXPECT_TRUE(c.loop().RunUntil([&] { return everyone_sees("999999999999"); }, 30s));
}

// The coordinator judges rollouts on reports: each one reaches it at once,
// not when a gossip round happens to pick it among the random targets.
TEST(SoftStateSim, EveryReportGoesStraightToTheNodeToTell) {
  spdlog::set_level(spdlog::level::err);
  constexpr int kNodes = 8;
  std::vector<Stack> nodes(kNodes);
  sim::Cluster c(32, sim::ProfileConfig("lan"));
  for (int i = 0; i < kNodes; ++i) c.Add();
  c.OnBoot([&](int i) {
    nodes[i].channels = std::make_unique<membership::UserChannels>(c.node(i));
    nodes[i].soft = std::make_unique<SoftState>(c.name(i), 1, c.clock(i), *nodes[i].channels, 10s);
    nodes[i].soft->Start();
  });
  c.OnCrash([&](int i) {
    nodes[i].soft.reset();
    nodes[i].channels.reset();
  });
  ASSERT_TRUE(c.FormAll(1s));
  nodes[5].soft->AlsoTell([&] { return std::vector<std::string>{c.addr(0)}; });
  for (int round = 0; round < 20; ++round) {
    const std::string rev = std::to_string(round) + "r";
    nodes[5].soft->Update([&](NodeReport& r) { r.applied_revision = rev; });
    // Well within one gossip interval.
    c.loop().RunFor(20ms);
    auto seen = nodes[0].soft->Get(c.name(5));
    ASSERT_TRUE(seen && seen->applied_revision == rev) << "round " << round;
  }
  // A passing check counts at the holder when its count rises; the
  // refreshes in between (every 10 s here) repeat the count and do not.
  // (The reports above, with no check, set this generation's baseline.)
  EXPECT_FALSE(nodes[0].soft->CheckedAt(c.name(5)));
  nodes[5].soft->Confirm();
  c.loop().RunFor(20ms);
  const std::optional<Time> checked = nodes[0].soft->CheckedAt(c.name(5));
  ASSERT_TRUE(checked);
  c.loop().RunFor(25s);
  EXPECT_EQ(nodes[0].soft->CheckedAt(c.name(5)), checked) << "a refresh counted as a check";
  EXPECT_GT(*nodes[0].soft->HeardAt(c.name(5)), *checked) << "no refresh arrived";
  ASSERT_TRUE(nodes[5].soft->CheckedAt(c.name(5)));
  EXPECT_LE(*nodes[5].soft->CheckedAt(c.name(5)), *checked) << "its own last check";
  // No one to tell: broadcasts alone.
  nodes[5].soft->AlsoTell([] { return std::vector<std::string>{}; });
  nodes[5].soft->Update([&](NodeReport& r) { r.applied_revision = "last"; });
  EXPECT_TRUE(c.loop().RunUntil(
      [&] {
        auto seen = nodes[0].soft->Get(c.name(5));
        return seen && seen->applied_revision == "last";
      },
      30s));
}

// A refresh goes straight to the next few members in turn, not through the
// broadcast queue: a node sends the same few datagrams per refresh whatever
// the cluster's size, and a node that joins after every report was spread
// still hears every one within two turns of the others' cursors.
TEST(SoftStateSim, RefreshesReachEveryMemberInTurn) {
  spdlog::set_level(spdlog::level::err);
  constexpr int kNodes = 31;
  constexpr Duration kRefresh = 2s;
  std::vector<Stack> nodes(kNodes);
  sim::Cluster c(77, sim::ProfileConfig("lan"), sim::NetworkOptions{.loss = 0.01});
  for (int i = 0; i < kNodes; ++i) c.Add();
  c.OnBoot([&](int i) {
    nodes[i].channels = std::make_unique<membership::UserChannels>(c.node(i));
    nodes[i].soft = std::make_unique<SoftState>(c.name(i), 1, c.clock(i), *nodes[i].channels, kRefresh);
    nodes[i].soft->Start();
  });
  c.OnCrash([&](int i) {
    nodes[i].soft.reset();
    nodes[i].channels.reset();
  });
  c.Start(0);
  for (int i = 1; i < kNodes - 1; ++i) c.StartAndJoin(i, 0);
  ASSERT_TRUE(c.loop().RunUntil(
      [&] {
        for (int i = 0; i < kNodes - 1; ++i)
          if (c.node(i).NumAlive() != kNodes - 1) return false;
        return true;
      },
      60s));
  for (int i = 0; i < kNodes - 1; ++i)
    nodes[i].soft->Update([&](NodeReport& r) { r.applied_revision = "rev" + std::to_string(i); });
  c.loop().RunFor(60s);  // the changes' broadcasts are over

  auto sent = [&](int i) { return c.node(i).counters().at("user_messages_sent.3"); };
  std::vector<uint64_t> before(kNodes - 1);
  for (int i = 0; i < kNodes - 1; ++i) before[i] = sent(i);
  const int refreshes = 20;
  c.loop().RunFor(refreshes * kRefresh);
  for (int i = 0; i < kNodes - 1; ++i) {
    EXPECT_LE(sent(i) - before[i], (refreshes + 1) * SoftState::kRefreshPeers) << c.name(i);
    EXPECT_GE(sent(i) - before[i], (refreshes - 1) * SoftState::kRefreshPeers) << c.name(i);
  }

  const int late = kNodes - 1;
  c.StartAndJoin(late, 0);
  const size_t turn = (kNodes + SoftState::kRefreshPeers - 1) / SoftState::kRefreshPeers;
  c.loop().RunFor(static_cast<int64_t>(2 * turn + 2) * kRefresh);
  for (int i = 0; i < kNodes - 1; ++i) {
    auto r = nodes[late].soft->Get(c.name(i));
    ASSERT_TRUE(r) << c.name(late) << " never heard " << c.name(i);
    EXPECT_EQ(r->applied_revision, "rev" + std::to_string(i));
    EXPECT_TRUE(nodes[late].soft->Fresh(c.name(i))) << c.name(i);
  }
}

TEST(SoftStateCodec, RoundTripAndBadBytes) {
  NodeReport r{"n1", (uint64_t{3} << 32) | 7, "abcdef012345", true, "applying", {{"db.url", "x"}}, "exit 0", "abcdef012345"};
  auto back = DecodeReport(EncodeReport(r));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, r);
  Bytes good = EncodeReport(r);
  SeededRandom rng(3);
  for (int i = 0; i < 2000; ++i) {
    Bytes b = good;
    b[rng.Uniform(b.size())] ^= static_cast<uint8_t>(1 + rng.Uniform(255));
    auto d = DecodeReport(b);
    if (!d.ok()) {
      EXPECT_EQ(d.status().code(), Status::Code::kCorruption);
    }
  }
  EXPECT_FALSE(DecodeReport(Bytes(5000, 0)).ok());
}

}  // namespace
}  // namespace starling::node
