// `starling keys` between simulated nodes, watched by an eavesdropper who
// records every frame on the wire and holds the old cluster key: what such a
// holder learns from each way of rotating, and what resending a recorded
// frame does. Every test prints its seed; rerun with STARLING_SEED=<seed>.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <optional>

#include "keys.h"
#include "starling/membership/user_channels.h"
#include "starling/sim/simulator.h"

namespace starling::node {
namespace {

using membership::Key;
using membership::Keyring;
using sim::Cluster;

uint64_t Seed(uint64_t fallback) {
  if (const char* s = std::getenv("STARLING_SEED")) return std::strtoull(s, nullptr, 10);
  return fallback;
}

struct Recorded {
  Cluster::Wire kind;
  int from, to;
  Bytes bytes;
};

// n keyed nodes with their key commands, and a recorder on the wire.
class KeysCluster {
 public:
  KeysCluster(uint64_t seed, int n, const Key& key) : nodes_(n), c_(seed, sim::ProfileConfig("local")) {
    std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
    for (int i = 0; i < n; ++i) {
      auto cfg = sim::ProfileConfig("local");
      cfg.keyring = std::make_shared<Keyring>();
      EXPECT_TRUE(cfg.keyring->Install(key).ok());
      nodes_[i].ring = cfg.keyring;
      c_.Add(cfg);
    }
    c_.OnBoot([this](int i) {
      auto& node = nodes_[i];
      node.channels = std::make_unique<membership::UserChannels>(c_.node(i));
      node.keys = std::make_unique<KeyCommands>(*node.channels, node.ring, [&node](const Keyring& r) {
        ++node.saves;
        node.saved = r.keys();
        return Status::Ok();
      });
    });
    c_.OnCrash([this](int i) {
      nodes_[i].keys.reset();
      nodes_[i].channels.reset();
    });
    c_.OnWire([this](Cluster::Wire kind, int from, int to, const Bytes& bytes) {
      wire_.push_back({kind, from, to, bytes});
    });
  }

  // Runs a keys command on node i to its end.
  store::Json Run(int i, const std::string& op, const std::string& key, bool local = false) {
    std::optional<Result<store::Json>> out;
    nodes_[i].keys->Run(op, key, local, [&](Result<store::Json> r) { out = std::move(r); });
    for (int step = 0; step < 100 && !out; ++step) c_.loop().RunFor(std::chrono::milliseconds(100));
    EXPECT_TRUE(out.has_value()) << op << " never finished";
    if (!out) return store::Json();
    EXPECT_TRUE(out->ok()) << op << ": " << out->status().ToString();
    return out->ok() ? **out : store::Json();
  }

  Cluster& c() { return c_; }
  Keyring& ring(int i) { return *nodes_[i].ring; }
  const std::vector<Recorded>& wire() const { return wire_; }
  uint64_t Counter(int i, const std::string& name) { return c_.node(i).counters().at(name); }

 private:
  struct Node {
    std::shared_ptr<Keyring> ring;
    std::unique_ptr<membership::UserChannels> channels;
    std::unique_ptr<KeyCommands> keys;
    int saves = 0;
    std::vector<Key> saved;
  };
  std::vector<Node> nodes_;
  std::vector<Recorded> wire_;
  Cluster c_;  // last: its teardown calls OnCrash
};

// A keyring with only `key`: what someone who kept or stole it holds.
Keyring Holding(const Key& key) {
  Keyring ring;
  EXPECT_TRUE(ring.Install(key).ok());
  return ring;
}

// Whether `needle` occurs in `hay`.
bool Contains(const Bytes& hay, const Key& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

// How many recorded frames `thief` opens, and how many of those hold `secret`.
std::pair<int, int> WhatTheThiefReads(const std::vector<Recorded>& wire, size_t from, const Keyring& thief,
                                      const Key& secret) {
  int opened = 0, leaks = 0;
  for (size_t i = from; i < wire.size(); ++i) {
    auto clear = thief.Decrypt(wire[i].bytes);
    if (!clear) continue;
    ++opened;
    if (Contains(clear->clear, secret)) ++leaks;
  }
  return {opened, leaks};
}

TEST(KeysSim, AKeyInstalledOnEachNodeNeverReachesAHolderOfTheOldKey) {
  const Key old_key = Keyring::Generate(), new_key = Keyring::Generate();
  KeysCluster kc(Seed(71), 4, old_key);
  ASSERT_TRUE(kc.c().FormAll(std::chrono::seconds(1), std::chrono::seconds(30)));
  const Keyring thief = Holding(old_key);
  const size_t start = kc.wire().size();

  // Out of band: on each node by hand, then use and remove cluster-wide by
  // fingerprint, with a list in between (whose replies are sealed under the
  // old key: a reply that carried keyrings would hand the thief the new one).
  for (int i = 0; i < 4; ++i) kc.Run(i, "install", Keyring::FormatKey(new_key), /*local=*/true);
  auto list = kc.Run(1, "list", "");
  ASSERT_EQ(list["keys"].size(), 2u) << list.dump();
  EXPECT_EQ(list["responded"], 4);
  for (const auto& k : list["keys"]) EXPECT_EQ(k["members"], 4) << list.dump();
  kc.Run(2, "use", Keyring::Fingerprint(new_key));
  auto removed = kc.Run(3, "remove", Keyring::Fingerprint(old_key));
  EXPECT_EQ(removed["errors"].size(), 0u) << removed.dump();
  kc.c().loop().RunFor(std::chrono::seconds(10));

  for (int i = 0; i < 4; ++i) EXPECT_EQ(kc.ring(i).keys(), std::vector<Key>{new_key}) << kc.c().name(i);
  EXPECT_TRUE(kc.c().Converged());
  auto [opened, leaks] = WhatTheThiefReads(kc.wire(), start, thief, new_key);
  EXPECT_GE(opened, 3) << "the thief reads the traffic under the old key (the list replies at least)";
  EXPECT_EQ(leaks, 0) << "frames under the old key that carry the new key";
  // And what is sent now, the thief cannot open.
  const size_t after = kc.wire().size();
  kc.c().loop().RunFor(std::chrono::seconds(10));
  EXPECT_GT(kc.wire().size(), after);
  EXPECT_EQ(WhatTheThiefReads(kc.wire(), after, thief, new_key).first, 0);
}

TEST(KeysSim, AnInBandInstallIsReadByAHolderOfTheCurrentKeyAsSecurityMdSays) {
  const Key old_key = Keyring::Generate(), new_key = Keyring::Generate();
  KeysCluster kc(Seed(73), 3, old_key);
  ASSERT_TRUE(kc.c().FormAll(std::chrono::seconds(1), std::chrono::seconds(30)));
  const Keyring thief = Holding(old_key);
  const size_t start = kc.wire().size();
  auto install = kc.Run(0, "install", Keyring::FormatKey(new_key));
  EXPECT_TRUE(install.contains("warning")) << install.dump();
  EXPECT_GT(WhatTheThiefReads(kc.wire(), start, thief, new_key).second, 0);
}

TEST(KeysSim, ARecordedKeyCommandResentLaterChangesNothing) {
  const Key k1 = Keyring::Generate(), k2 = Keyring::Generate(), k3 = Keyring::Generate();
  KeysCluster kc(Seed(79), 4, k1);
  ASSERT_TRUE(kc.c().FormAll(std::chrono::seconds(1), std::chrono::seconds(30)));
  kc.Run(0, "install", Keyring::FormatKey(k2));
  const size_t before_use = kc.wire().size();
  kc.Run(0, "use", Keyring::Fingerprint(k2));
  // The `use k2` request to node 3 as it crossed the wire.
  std::optional<Recorded> captured;
  for (size_t i = before_use; i < kc.wire().size(); ++i) {
    const auto& w = kc.wire()[i];
    if (w.kind == Cluster::Wire::kRequest && w.from == 0 && w.to == 3) captured = w;
  }
  ASSERT_TRUE(captured.has_value());

  auto resend = [&](const Recorded& frame) {
    std::optional<Bytes> answer;
    kc.c().node(3).HandleStream(kc.c().addr(0), frame.bytes, [&](Bytes b) { answer = std::move(b); });
    kc.c().loop().RunFor(std::chrono::seconds(1));
    return answer;
  };
  // At once: the copy is refused, and counted.
  const uint64_t replayed = kc.Counter(3, "bad_packets.replayed");
  auto answer = resend(*captured);
  ASSERT_TRUE(answer.has_value());
  EXPECT_TRUE(answer->empty()) << "a replayed request gets no answer";
  EXPECT_EQ(kc.Counter(3, "bad_packets.replayed"), replayed + 1);

  // The next rotation, k2 -> k3, with node 3 still holding k2 while k3 is
  // made primary: the recorded `use k2`, resent then, must not switch it back.
  kc.Run(1, "install", Keyring::FormatKey(k3));
  kc.Run(1, "remove", Keyring::Fingerprint(k1));
  kc.Run(1, "use", Keyring::Fingerprint(k3));
  ASSERT_EQ(kc.ring(3).keys().front(), k3);
  ASSERT_TRUE(kc.ring(3).Has(k2));
  kc.c().loop().RunFor(std::chrono::seconds(90));
  const uint64_t out_of_window = kc.Counter(3, "bad_packets.out_of_window");
  resend(*captured);
  EXPECT_EQ(kc.Counter(3, "bad_packets.out_of_window"), out_of_window + 1);
  EXPECT_EQ(kc.ring(3).keys().front(), k3) << "the recorded command switched node 3 back to k2";
  kc.Run(2, "remove", Keyring::Fingerprint(k2));
  kc.c().loop().RunFor(std::chrono::seconds(10));
  EXPECT_TRUE(kc.c().Converged());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(kc.ring(i).keys(), std::vector<Key>{k3}) << kc.c().name(i);

  // Datagrams too: every packet recorded in the first rotation, resent.
  uint64_t dropped = 0, resent = 0;
  for (int i = 0; i < 4; ++i)
    dropped -= kc.Counter(i, "bad_packets.out_of_window") + kc.Counter(i, "bad_packets.auth");
  for (size_t i = before_use; i < kc.wire().size() && resent < 200; ++i) {
    const auto& w = kc.wire()[i];
    if (w.kind != Cluster::Wire::kPacket || !kc.c().up(w.to)) continue;
    kc.c().node(w.to).HandlePacket(kc.c().addr(w.from), w.bytes);
    ++resent;
  }
  for (int i = 0; i < 4; ++i)
    dropped += kc.Counter(i, "bad_packets.out_of_window") + kc.Counter(i, "bad_packets.auth");
  EXPECT_GT(resent, 20u);
  EXPECT_EQ(dropped, resent) << "every old datagram is refused, by its age or because its key is gone";
}

}  // namespace
}  // namespace starling::node
