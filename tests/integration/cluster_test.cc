// Multi-process membership: real starlingd daemons on 127.0.0.1, observed
// only through `starling ... --format json`, as an operator would.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "local_cluster.h"

namespace starling::itest {
namespace {

// Generous next to the local profile's timings (1 s probes, a suspicion
// timeout of a few seconds): a miss here is a bug, not a slow machine.
constexpr Millis kConverge = 30s;
constexpr Millis kDetect = 30s;

uint64_t IncarnationOf(const LocalCluster& c, int observer, const std::string& name) {
  std::optional<nlohmann::json> members = c.Members(observer);
  if (!members) return 0;
  for (const auto& m : *members) {
    if (m["name"] == name) return m["incarnation"].get<uint64_t>();
  }
  return 0;
}

TEST(Cluster, TenNodesJoinedThroughOneSeedConverge) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(10));
  // Every field the issue promises scripts, on every node.
  for (int i : c.All()) {
    std::optional<nlohmann::json> members = c.Members(i);
    ASSERT_TRUE(members);
    ASSERT_EQ(members->size(), 10u);
    for (const auto& m : *members) {
      EXPECT_TRUE(m["name"].is_string());
      EXPECT_TRUE(m["addr"].is_string());
      EXPECT_EQ(m["status"], "alive");
      EXPECT_TRUE(m["tags"].is_object());
      EXPECT_TRUE(m["incarnation"].is_number_unsigned());
      EXPECT_TRUE(m["protocol"]["min"].is_number());
    }
  }
}

TEST(Cluster, KilledNodeIsSeenFailedByAllOthers) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(5));
  const int victim = 3;
  c.Kill(victim);
  auto want = c.AllAlive();
  want[c.node(victim).name] = "failed";
  EXPECT_EQ(c.AwaitView(c.AllExcept(victim), want, kDetect), "");
}

TEST(Cluster, LeavingNodeIsSeenLeftAndExitsZero) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(5));
  const int leaver = 2;
  CommandResult r = c.Cli(leaver, {"leave"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::optional<int> code = c.WaitExit(leaver, 15s);
  ASSERT_TRUE(code.has_value()) << "the daemon did not exit after `starling leave`";
  EXPECT_EQ(*code, 0);
  auto want = c.AllAlive();
  want[c.node(leaver).name] = "left";
  EXPECT_EQ(c.AwaitView(c.AllExcept(leaver), want, kDetect), "");
}

TEST(Cluster, SigtermLeavesGracefully) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3));
  c.Signal(1, SIGTERM);
  std::optional<int> code = c.WaitExit(1, 15s);
  ASSERT_TRUE(code.has_value()) << "the daemon did not exit after SIGTERM";
  EXPECT_EQ(*code, 0);
  auto want = c.AllAlive();
  want[c.node(1).name] = "left";
  EXPECT_EQ(c.AwaitView(c.AllExcept(1), want, kDetect), "");
}

TEST(Cluster, KilledNodeRestartedWithoutJoinComesBackAlive) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(5));
  const int victim = 4;
  const std::string name = c.node(victim).name;
  uint64_t before = IncarnationOf(c, 0, name);
  ASSERT_GT(before, 0u);
  c.Kill(victim);
  auto want = c.AllAlive();
  want[name] = "failed";
  // Seen failed first, so that "alive" afterwards is the restart's doing.
  ASSERT_EQ(c.AwaitView(c.AllExcept(victim), want, kDetect), "");

  // No --join: it must find the cluster through its persisted members.
  ASSERT_TRUE(c.Restart(victim, {}));
  EXPECT_EQ(c.AwaitView(c.All(), c.AllAlive(), kConverge), "");
  uint64_t after = IncarnationOf(c, 0, name);
  EXPECT_GT(after, before) << "the incarnation must not go backwards across a restart";
  EXPECT_GE(after >> 32, 2u) << "the second start should carry generation 2";
}

// A free UDP and TCP port on 127.0.0.1 (gossip binds both), for a seed that
// does not exist yet.
int FreeGossipPort() {
  for (int tries = 0; tries < 20; ++tries) {
    int t = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (bind(t, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        getsockname(t, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
        bind(u, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0)
      port = ntohs(a.sin_port);
    close(t);
    close(u);
    if (port != 0) return port;
  }
  return 0;
}

// Serf's -retry-join: a node started before its seed exists keeps trying,
// and joins once the seed is up (named by DNS: localhost).
TEST(Cluster, RetryJoinJoinsASeedThatComesUpLater) {
  LocalCluster c;
  const int port = FreeGossipPort();
  ASSERT_GT(port, 0);
  const int early = c.Launch("early", {"--retry-join", "localhost:" + std::to_string(port), "--retry-interval", "300ms"});
  // It tries and fails a few times first (its log says so).
  ASSERT_TRUE(WaitFor([&] { return c.LogOf(early).find("join attempt 3 failed") != std::string::npos; }, 10s))
      << c.LogOf(early);
  const int seed = c.Launch("seed", {}, "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(c.WaitReady(seed));
  ASSERT_TRUE(c.WaitReady(early));
  EXPECT_EQ(c.AwaitView({early, seed}, {{"early", "alive"}, {"seed", "alive"}}, 20s), "");
}

// With --retry-max the node gives up, saying why, and exits 1.
TEST(Cluster, RetryMaxGivesUpAndExits) {
  LocalCluster c;
  const int port = FreeGossipPort();
  const int n = c.Launch("lonely", {"--retry-join", "127.0.0.1:" + std::to_string(port), "--retry-interval",
                                    "200ms", "--retry-max", "3"});
  EXPECT_EQ(c.WaitExit(n, 15s), std::optional<int>(1)) << c.LogOf(n);
  EXPECT_NE(c.LogOf(n).find("no seed answered in 3 join attempts"), std::string::npos) << c.LogOf(n);
}

}  // namespace
}  // namespace starling::itest
