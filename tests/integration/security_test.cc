// Encrypted gossip between real daemons: a keyed cluster forms, nodes with
// the wrong key or none are refused (and say why), and `starling keys`
// rotates the key on a live cluster without any member dropping out.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "local_cluster.h"

namespace starling::itest {
namespace {

std::string Keygen() {
  CommandResult r = RunCommand({STARLING_CLI_PATH, "keygen"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string key = r.out;
  while (!key.empty() && key.back() == '\n') key.pop_back();
  EXPECT_EQ(key.size(), 44u) << "not base64 of 32 bytes: " << key;
  return key;
}

uint64_t Counter(const LocalCluster& c, int i, const std::string& name) {
  auto info = c.Info(i);
  if (!info || !(*info)["counters"].contains(name)) return 0;
  return (*info)["counters"][name].get<uint64_t>();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `keys OP [KEY] --format json` on node i.
nlohmann::json Keys(const LocalCluster& c, int i, const std::vector<std::string>& args, int want_exit = 0) {
  std::vector<std::string> argv = {"keys"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--format", "json"});
  CommandResult r = c.Cli(i, argv);
  EXPECT_EQ(r.exit_code, want_exit) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

// key -> {members, primary} from a keys reply.
std::map<std::string, std::pair<int, int>> KeyCounts(const nlohmann::json& reply) {
  std::map<std::string, std::pair<int, int>> out;
  for (const auto& k : reply.value("keys", nlohmann::json::array()))
    out[k.value("key", "")] = {k.value("members", -1), k.value("primary", -1)};
  return out;
}

TEST(Security, EncryptedClusterForms) {
  const std::string key = Keygen();
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3, 30s, {"--encrypt", key}));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Counter(c, i, "bad_packets.auth"), 0u);
    EXPECT_EQ(Counter(c, i, "bad_packets.unencrypted"), 0u);
    EXPECT_TRUE(WaitFor([&] { return Counter(c, i, "messages_received.ack") > 0; }, 10s)) << "no probe answered";
    struct stat st{};
    const std::string ring = c.node(i).dir + "/keyring";
    ASSERT_EQ(stat(ring.c_str(), &st), 0) << ring;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "the keyring must be owner-only";
    EXPECT_NE(ReadFile(ring).find(key), std::string::npos);
    EXPECT_NE(c.LogOf(i, 100000).find("gossip is encrypted"), std::string::npos);
    EXPECT_EQ(c.LogOf(i, 100000).find("NOT ENCRYPTED"), std::string::npos);
  }
  auto list = Keys(c, 1, {"list"});
  EXPECT_EQ(list.value("members", 0), 3);
  EXPECT_EQ(list.value("responded", 0), 3);
  EXPECT_EQ(KeyCounts(list), (std::map<std::string, std::pair<int, int>>{{key, {3, 3}}}));
}

TEST(Security, NodeWithoutTheKeyIsRefusedAndSaysWhy) {
  const std::string key = Keygen();
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3, 30s, {"--encrypt", key}));
  struct Case {
    std::string name;
    std::vector<std::string> args;
    std::string counter;  // counted by the seed
    std::string says;     // in the refused node's log
  };
  const std::vector<Case> cases = {
      {"wrongkey", {"--encrypt", Keygen()}, "bad_packets.auth", "no key in this node's keyring opens the request"},
      {"nokey", {}, "bad_packets.unencrypted", "this cluster is encrypted and the request was not"},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    const uint64_t before = Counter(c, 0, tc.counter);
    std::vector<std::string> args = tc.args;
    args.insert(args.end(), {"--join", c.node(0).addr});
    int i = c.Start(tc.name, args);
    ASSERT_GE(i, 0);
    EXPECT_TRUE(WaitFor([&] { return Counter(c, 0, tc.counter) > before; }, 10s))
        << tc.counter << " did not grow on the seed";
    EXPECT_TRUE(WaitFor([&] { return c.LogOf(i, 100000).find(tc.says) != std::string::npos; }, 10s))
        << c.LogOf(i);
    if (tc.args.empty()) {
      EXPECT_NE(c.LogOf(i, 100000).find("GOSSIP IS NOT ENCRYPTED"), std::string::npos);
    }
    // Never a member, on either side.
    auto own = c.Members(i);
    ASSERT_TRUE(own);
    EXPECT_EQ(own->size(), 1u) << own->dump();
    EXPECT_EQ(c.ViewMismatch({0, 1, 2}, {{"node0", "alive"}, {"node1", "alive"}, {"node2", "alive"}}), "");
    c.Kill(i);
  }
}

TEST(Security, KeyRotationOnALiveClusterKeepsEveryMemberAlive) {
  const std::string old_key = Keygen(), new_key = Keygen();
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(5, 40s, {"--encrypt", old_key}));
  const auto all_alive = c.AllAlive();

  // Every node's view, polled for the whole rotation.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> dropped;
  int polls = 0;
  std::thread watcher([&] {
    while (!stop) {
      for (int i = 0; i < 5 && !stop; ++i) {
        std::string mismatch = c.ViewMismatch({i}, all_alive);
        std::lock_guard<std::mutex> lock(mu);
        ++polls;
        if (!mismatch.empty()) dropped.push_back(mismatch);
      }
    }
  });

  using Counts = std::map<std::string, std::pair<int, int>>;
  auto install = Keys(c, 0, {"install", new_key});
  EXPECT_EQ(install.value("responded", 0), 5) << install.dump();
  EXPECT_EQ(KeyCounts(install), (Counts{{old_key, {5, 5}}, {new_key, {5, 0}}}));
  auto use = Keys(c, 2, {"use", new_key});
  EXPECT_EQ(KeyCounts(use), (Counts{{old_key, {5, 0}}, {new_key, {5, 5}}}));
  // The primary cannot go.
  auto refused = Keys(c, 3, {"remove", new_key}, 1);
  EXPECT_EQ(refused.size(), 0u) << "refused on the node asked, so nothing was sent";
  auto removed = Keys(c, 4, {"remove", old_key});
  EXPECT_EQ(removed.value("errors", nlohmann::json::object()).size(), 0u) << removed.dump();
  EXPECT_EQ(KeyCounts(removed), (Counts{{new_key, {5, 5}}}));
  // Probes keep flowing under the new key alone: every node gets 20 more
  // acks while the watcher keeps looking.
  std::vector<uint64_t> acks;
  for (int i = 0; i < 5; ++i) acks.push_back(Counter(c, i, "messages_received.ack"));
  EXPECT_TRUE(WaitFor(
      [&] {
        for (int i = 0; i < 5; ++i)
          if (Counter(c, i, "messages_received.ack") < acks[i] + 20) return false;
        return true;
      },
      30s));
  stop = true;
  watcher.join();
  EXPECT_GT(polls, 10);
  EXPECT_TRUE(dropped.empty()) << dropped.size() << " views missed a member, first: " << dropped.front();

  for (int i = 0; i < 5; ++i) {
    const std::string ring = ReadFile(c.node(i).dir + "/keyring");
    EXPECT_NE(ring.find(new_key), std::string::npos) << c.node(i).name;
    EXPECT_EQ(ring.find(old_key), std::string::npos) << c.node(i).name;
    EXPECT_EQ(Counter(c, i, "bad_packets.auth"), 0u) << c.node(i).name;
  }
  // A node restarted with its old --encrypt flag comes back on the rotated
  // keyring from its data dir.
  c.Kill(3);
  ASSERT_TRUE(c.Restart(3, {"--encrypt", old_key, "--join", c.node(0).addr}));
  EXPECT_EQ(c.AwaitView(c.All(), all_alive, 30s), "");
  EXPECT_NE(c.LogOf(3, 100000).find("--encrypt ignored"), std::string::npos);
}

}  // namespace
}  // namespace starling::itest
