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
#include "starling/membership/keyring.h"

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

// The fingerprint `keys` shows for a key.
std::string Fp(const std::string& key) {
  auto parsed = membership::Keyring::ParseKey(key);
  EXPECT_TRUE(parsed.ok()) << key;
  return parsed.ok() ? membership::Keyring::Fingerprint(*parsed) : "";
}

// key -> {members, primary} from a keys reply, which names keys by
// fingerprint only.
std::map<std::string, std::pair<int, int>> KeyCounts(const nlohmann::json& reply,
                                                     const std::vector<std::string>& keys) {
  std::map<std::string, std::string> by_fp;
  for (const auto& k : keys) by_fp[Fp(k)] = k;
  std::map<std::string, std::pair<int, int>> out;
  for (const auto& k : reply.value("keys", nlohmann::json::array())) {
    EXPECT_FALSE(k.contains("key")) << "a reply must not carry keys: " << k.dump();
    const std::string fp = k.value("fingerprint", "");
    out[by_fp.count(fp) ? by_fp[fp] : fp] = {k.value("members", -1), k.value("primary", -1)};
  }
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
  EXPECT_EQ(KeyCounts(list, {key}), (std::map<std::string, std::pair<int, int>>{{key, {3, 3}}}));
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
  EXPECT_EQ(KeyCounts(install, {old_key, new_key}), (Counts{{old_key, {5, 5}}, {new_key, {5, 0}}}));
  auto use = Keys(c, 2, {"use", new_key});
  EXPECT_EQ(KeyCounts(use, {old_key, new_key}), (Counts{{old_key, {5, 0}}, {new_key, {5, 5}}}));
  // The primary cannot go.
  auto refused = Keys(c, 3, {"remove", new_key}, 1);
  EXPECT_EQ(refused.size(), 0u) << "refused on the node asked, so nothing was sent";
  auto removed = Keys(c, 4, {"remove", old_key});
  EXPECT_EQ(removed.value("errors", nlohmann::json::object()).size(), 0u) << removed.dump();
  EXPECT_EQ(KeyCounts(removed, {old_key, new_key}), (Counts{{new_key, {5, 5}}}));
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

// The rotation that shuts out a stolen key: the new key is installed on each
// node from a file, by hand (it never crosses the network), then made primary
// and the old one removed cluster-wide by fingerprint. A node that holds only
// the old key is refused afterwards.
TEST(Security, RotationInstalledOnEachNodeShutsOutTheOldKey) {
  const std::string old_key = Keygen(), new_key = Keygen();
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3, 30s, {"--encrypt", old_key}));
  const auto all_alive = c.AllAlive();
  const std::string key_file = c.root() + "/new.key";
  {
    std::ofstream out(key_file);
    out << new_key << "\n";
  }
  using Counts = std::map<std::string, std::pair<int, int>>;
  for (int i = 0; i < 3; ++i) {
    auto local = Keys(c, i, {"install", "--local", "--key-file", key_file});
    EXPECT_EQ(local.value("local", false), true) << local.dump();
    EXPECT_EQ(local.value("members", 0), 1) << "asked no other member";
    EXPECT_EQ(KeyCounts(local, {old_key, new_key}), (Counts{{old_key, {1, 1}}, {new_key, {1, 0}}}));
    EXPECT_FALSE(local.contains("warning"));
    // Nobody else was told: the next node does not hold it yet.
    if (i < 2) {
      auto next = Keys(c, i + 1, {"list", "--local"});
      EXPECT_EQ(KeyCounts(next, {old_key, new_key}), (Counts{{old_key, {1, 1}}})) << next.dump();
    }
  }
  auto list = c.Cli(1, {"keys", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find(Fp(new_key)), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find(new_key), std::string::npos) << "a key is shown by fingerprint only: " << list.out;
  EXPECT_EQ(list.out.find(old_key), std::string::npos) << list.out;

  // Named by fingerprint; an unknown one is refused, naming it.
  const std::string stranger = Fp(Keygen());
  auto unknown = c.Cli(0, {"keys", "use", stranger});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no key with fingerprint " + stranger), std::string::npos) << unknown.err;
  auto use = Keys(c, 0, {"use", Fp(new_key)});
  EXPECT_EQ(KeyCounts(use, {old_key, new_key}), (Counts{{old_key, {3, 0}}, {new_key, {3, 3}}})) << use.dump();
  auto removed = Keys(c, 2, {"remove", old_key});
  EXPECT_EQ(KeyCounts(removed, {old_key, new_key}), (Counts{{new_key, {3, 3}}})) << removed.dump();
  EXPECT_EQ(c.AwaitView(c.All(), all_alive, 10s), "");

  // Whoever kept the old key is out now.
  const uint64_t auth_before = Counter(c, 0, "bad_packets.auth");
  int thief = c.Start("thief", {"--encrypt", old_key, "--join", c.node(0).addr});
  ASSERT_GE(thief, 0);
  EXPECT_TRUE(WaitFor([&] { return Counter(c, 0, "bad_packets.auth") > auth_before; }, 10s));
  auto own = c.Members(thief);
  ASSERT_TRUE(own);
  EXPECT_EQ(own->size(), 1u) << own->dump();
  EXPECT_EQ(c.ViewMismatch({0, 1, 2}, all_alive), "");
  c.Kill(thief);

  // An in-band install still works, and says what it does not protect.
  auto inband = c.Cli(0, {"keys", "install", Keygen()});
  EXPECT_EQ(inband.exit_code, 0) << inband.err;
  EXPECT_NE(inband.err.find("whoever holds that key can read it"), std::string::npos) << inband.err;
  // Neither both KEY and --key-file, nor neither.
  EXPECT_NE(c.Cli(0, {"keys", "use", Fp(new_key), "--key-file", key_file}).exit_code, 0);
  auto missing = c.Cli(0, {"keys", "use"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("KEY or --key-file"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace starling::itest
