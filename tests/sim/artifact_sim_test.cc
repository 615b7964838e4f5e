// Artifact distribution on virtual time: every node runs the desired-state
// log and the artifact fetcher over the simulated network (loss, crashes,
// partitions); each node's store is a real directory, which survives its
// crashes as a data dir does. File work runs inline and answers on the
// node's clock, standing in for the daemon's worker thread.
// Every test prints its seed; rerun one with STARLING_SEED=<seed>.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <fstream>
#include <random>

#include "api_server.h"
#include "artifacts.h"
#include "file_artifact_store.h"
#include "state_commands.h"
#include "starling/membership/user_channels.h"
#include "starling/sim/simulator.h"
#include "starling/store/log.h"
#include "starling/store/memberlist_gossip.h"
#include "starling/store/replicator.h"

namespace starling::node {
namespace {

using namespace std::chrono_literals;
using sim::Cluster;
using store::Json;

using sim::SeedOr;

// Which store calls ran outside an Offload job (the simulator runs jobs on
// the one thread, so "off the protocol thread" is "inside a job").
struct OffloadWatch {
  bool inside = false;
  std::map<std::string, int> outside;  // method -> calls made on the protocol thread
};

// An ArtifactStore that notes each blocking call made outside an Offload job.
// Has() and PathOf() (a stat, a string) are allowed on the protocol thread.
class WatchedStore final : public ArtifactStore {
 public:
  WatchedStore(ArtifactStore& store, OffloadWatch& watch) : s_(store), w_(watch) {}
  Status Init() override { return s_.Init(); }
  Result<ArtifactManifest> Add(int fd, const std::string& what, const std::string& name,
                               const std::string& version) override {
    Note("Add");
    return s_.Add(fd, what, name, version);
  }
  bool Has(const std::string& digest) const override { return s_.Has(digest); }
  std::string PathOf(const std::string& digest) const override { return s_.PathOf(digest); }
  Status Verify(const std::string& digest) const override {
    Note("Verify");
    return s_.Verify(digest);
  }
  Result<std::vector<bool>> Begin(const ArtifactManifest& m) override {
    Note("Begin");
    return s_.Begin(m);
  }
  Status WriteChunk(const ArtifactManifest& m, size_t index, ByteView data) override {
    Note("WriteChunk");
    return s_.WriteChunk(m, index, data);
  }
  Status Finish(const ArtifactManifest& m) override {
    Note("Finish");
    return s_.Finish(m);
  }
  Result<Bytes> ReadChunk(const ArtifactManifest& m, size_t index) const override {
    Note("ReadChunk");
    return s_.ReadChunk(m, index);
  }
  Status Remove(const std::string& digest) override {
    Note("Remove");
    return s_.Remove(digest);
  }
  std::vector<std::string> Complete() const override {
    Note("Complete");
    return s_.Complete();
  }
  std::vector<std::string> Partial() const override {
    Note("Partial");
    return s_.Partial();
  }
  uint64_t DiskBytes() const override {
    Note("DiskBytes");
    return s_.DiskBytes();
  }

 private:
  void Note(const char* method) const {
    if (!w_.inside) ++w_.outside[method];
  }
  ArtifactStore& s_;
  OffloadWatch& w_;
};

struct ArtNode {
  store::MemoryLogStorage storage;
  std::unique_ptr<FileArtifactStore> files;
  std::unique_ptr<WatchedStore> watched;
  std::unique_ptr<store::DesiredLog> log;
  std::unique_ptr<membership::UserChannels> channels;
  std::unique_ptr<store::MemberlistGossip> gossip;
  std::unique_ptr<store::Replicator> replicator;
  std::unique_ptr<Artifacts> artifacts;
  Artifacts::Stats before_crash;  // stats of earlier runs, summed
};

class ArtCluster {
 public:
  ArtCluster(uint64_t seed, int n, ArtifactConfig config = {})
      : config_(config), nodes_(n), c_(seed, sim::ProfileConfig("local")) {
    char tmpl[] = "/tmp/starling-artsim-XXXXXX";
    root_ = mkdtemp(tmpl);
    for (int i = 0; i < n; ++i) c_.Add();
    c_.OnBoot([this](int i) { Boot(i); });
    c_.OnCrash([this](int i) { Down(i); });
  }
  ~ArtCluster() {
    for (int i = 0; i < static_cast<int>(nodes_.size()); ++i) Down(i);
    std::filesystem::remove_all(root_);
  }
  Cluster& cluster() { return c_; }
  ArtNode& node(int i) { return nodes_[i]; }
  const std::string& root() const { return root_; }
  const OffloadWatch& watch() const { return watch_; }
  // Served bytes over every run of node i.
  uint64_t Served(int i) const {
    const ArtNode& n = nodes_[i];
    return n.before_crash.bytes_served + (n.artifacts ? n.artifacts->stats().bytes_served : 0);
  }
  uint64_t Corrupt(int i) const {
    const ArtNode& n = nodes_[i];
    return n.before_crash.corrupt_chunks + (n.artifacts ? n.artifacts->stats().corrupt_chunks : 0);
  }

 private:
  void Boot(int i) {
    ArtNode& n = nodes_[i];
    n.files = std::make_unique<FileArtifactStore>(root_ + "/" + c_.name(i));
    ASSERT_TRUE(n.files->Init().ok());
    auto opened = store::DesiredLog::Open(n.storage, 2000 + i, c_.name(i));
    ASSERT_TRUE(opened.ok());
    n.log = std::move(*opened);
    n.channels = std::make_unique<membership::UserChannels>(c_.node(i));
    n.gossip = std::make_unique<store::MemberlistGossip>(*n.channels);
    n.replicator = std::make_unique<store::Replicator>(*n.log, *n.gossip, c_.clock(i), c_.random(i));
    store::AttachReplicator(*n.replicator, *n.channels);
    n.watched = std::make_unique<WatchedStore>(*n.files, watch_);
    Clock& clock = c_.clock(i);
    n.artifacts = std::make_unique<Artifacts>(
        c_.name(i), clock, c_.random(i), *n.channels, *n.replicator, *n.watched,
        [&clock, w = &watch_](std::function<void()> work, std::function<void()> done) {
          w->inside = true;
          work();
          w->inside = false;
          clock.Schedule(10ms, std::move(done));
        },
        nullptr, config_);
    n.replicator->OnChange([a = n.artifacts.get()] { a->Refresh(); });
    n.replicator->Start();
    n.artifacts->Start();
  }
  void Down(int i) {
    ArtNode& n = nodes_[i];
    if (n.artifacts) {
      const Artifacts::Stats& s = n.artifacts->stats();
      n.before_crash.bytes_served += s.bytes_served;
      n.before_crash.corrupt_chunks += s.corrupt_chunks;
    }
    n.artifacts.reset();
    n.replicator.reset();
    n.gossip.reset();
    n.channels.reset();
    n.log.reset();
    n.watched.reset();
    n.files.reset();
  }

  ArtifactConfig config_;
  OffloadWatch watch_;
  std::string root_;
  std::vector<ArtNode> nodes_;
  Cluster c_;  // last: its teardown calls Down()
};

std::string Noise(const std::string& path, size_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(bytes, '\0');
  for (auto& ch : data) ch = static_cast<char>(rng());
  std::ofstream(path, std::ios::binary) << data;
  return path;
}

// The package goes to nodes with role `role` (everywhere when empty); every node commissioned.
Json Doc(Cluster& c, const std::string& digest, const std::string& role = "") {
  Json nodes = Json::object();
  for (int i = 0; i < c.size(); ++i) {
    nodes[c.name(i)] = {{"lifecycle", "commissioned"}};
    if (i == 1) nodes[c.name(i)]["roles"] = {"first"};
  }
  Json pkg = {{"version", "1"}, {"artifact", digest}};
  if (!role.empty()) pkg["roles"] = {role};
  return {{"roles", {"first"}}, {"nodes", nodes}, {"packages", {{"big", pkg}}}};
}

std::string AddOn(ArtCluster& ac, int i, const std::string& file) {
  std::optional<Result<Json>> added;
  // Opened as a client would, and handed over open.
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << file;
  ac.node(i).artifacts->Add(AdoptFile(fd), file, "big", "1", [&](Result<Json> r) { added = std::move(r); });
  ac.cluster().loop().RunUntil([&] { return added.has_value(); }, 5s);
  EXPECT_TRUE(added && added->ok()) << (added ? added->status().ToString() : "no answer");
  return added && added->ok() ? (**added)["digest"].get<std::string>() : "";
}

void Apply(ArtCluster& ac, int i, const Json& doc) {
  auto r = StateCommands(*ac.node(i).replicator).Apply({doc.dump(), "sim", ""});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

bool AllHold(ArtCluster& ac, const std::string& digest, const std::vector<int>& who) {
  for (int i : who)
    if (!ac.node(i).files || !ac.node(i).files->Has(digest)) return false;
  return true;
}

// Adds `bytes` of noise on node 0 and makes node 1 (role `first`) fetch it; the digest.
std::string OnlyNode1Holds(ArtCluster& ac, size_t bytes, uint64_t seed) {
  const std::string digest = AddOn(ac, 0, Noise(ac.root() + "/a.bin", bytes, seed));
  Apply(ac, 0, Doc(ac.cluster(), digest, "first"));
  EXPECT_TRUE(ac.cluster().loop().RunUntil([&] { return AllHold(ac, digest, {1}); }, 2min, 200ms));
  return digest;
}

TEST(ArtifactSim, ReachesEveryNodeUnderLossAndCrashesMostlyFromPeers) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  constexpr int kNodes = 8;
  constexpr size_t kBytes = 6u << 20;
  const uint64_t first = SeedOr(1);
  const int seeds = std::getenv("STARLING_SEED") ? 1 : 5;
  for (int k = 0; k < seeds; ++k) {
    const uint64_t seed = first + k;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
    ArtCluster ac(seed, kNodes);
    Cluster& c = ac.cluster();
    ASSERT_TRUE(c.FormAll(200ms));
    std::mt19937_64 rng(seed);
    const std::string file = Noise(ac.root() + "/big.bin", kBytes, seed);
    const std::string digest = AddOn(ac, 0, file);
    ASSERT_FALSE(digest.empty());
    Apply(ac, 0, Doc(c, digest));
    c.SetLoss(0.1);
    // Crash and restart fetchers while they fetch; the origin stays.
    for (int round = 0; round < 4; ++round) {
      c.loop().RunFor(std::chrono::milliseconds(300 + rng() % 700));
      const int victim = 1 + static_cast<int>(rng() % (kNodes - 1));
      if (c.up(victim)) c.Crash(victim);
      c.loop().RunFor(1s);
      c.Restart(victim);
    }
    std::vector<int> all(kNodes);
    for (int i = 0; i < kNodes; ++i) all[i] = i;
    ASSERT_TRUE(c.loop().RunUntil([&] { return AllHold(ac, digest, all); }, 5min, 500ms));
    c.SetLoss(0);
    for (int i = 0; i < kNodes; ++i) {
      auto sum = Sha256File(ac.node(i).files->PathOf(digest));
      ASSERT_TRUE(sum.ok());
      EXPECT_EQ(*sum, digest) << c.name(i);
    }
    uint64_t total = 0;
    for (int i = 0; i < kNodes; ++i) total += ac.Served(i);
    std::printf("  origin served %.1f MiB of %.1f MiB\n", ac.Served(0) / 1048576.0, total / 1048576.0);
    EXPECT_GE(total, uint64_t{kNodes - 1} * kBytes);
    EXPECT_LT(ac.Served(0) * 2, total);
  }
}

// Every blocking store call (hashing and writing a fetched chunk, reading one
// for a peer, listing for /metrics and for collection, removing) runs as an
// Offload job, never on the protocol thread; held() answers from a count.
TEST(ArtifactSim, FileWorkStaysOffTheProtocolThread) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  ArtifactConfig cfg;
  cfg.gc_grace = 2s;
  cfg.gc_every = 500ms;
  ArtCluster ac(SeedOr(31), 4, cfg);
  Cluster& c = ac.cluster();
  ASSERT_TRUE(c.FormAll(200ms));
  const std::string digest = AddOn(ac, 0, Noise(ac.root() + "/w.bin", 3u << 20, 31));
  Apply(ac, 0, Doc(c, digest));
  ASSERT_TRUE(c.loop().RunUntil([&] { return AllHold(ac, digest, {0, 1, 2, 3}); }, 2min, 200ms));
  c.loop().RunFor(1s);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(ac.node(i).artifacts->held(), 1u) << c.name(i);
  // No desired state names it any more: collected everywhere after the grace.
  Json doc = Doc(c, digest);
  doc["packages"] = Json::object();
  Apply(ac, 0, doc);
  ASSERT_TRUE(c.loop().RunUntil(
      [&] {
        for (int i = 0; i < 4; ++i)
          if (ac.node(i).files->Has(digest) || ac.node(i).artifacts->held() != 0) return false;
        return true;
      },
      1min, 200ms));
  for (const auto& [method, calls] : ac.watch().outside) EXPECT_EQ(calls, 0) << method << " ran on the protocol thread";
}

TEST(ArtifactSim, CorruptPeerIsShunnedAndTheChunkFetchedElsewhere) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  ArtCluster ac(SeedOr(21), 5);
  Cluster& c = ac.cluster();
  ASSERT_TRUE(c.FormAll(200ms));
  const std::string digest = OnlyNode1Holds(ac, 4u << 20, 5);
  ASSERT_TRUE(AllHold(ac, digest, {1}));
  // Rot on node 1's disk, one byte per chunk: it still says it holds every chunk.
  const std::string path = ac.node(1).files->PathOf(digest);
  std::filesystem::permissions(path, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    for (size_t off = 7; off < (4u << 20); off += 1u << 20) {
      f.seekp(static_cast<std::streamoff>(off));
      f.put('\x01');
    }
  }
  Apply(ac, 0, Doc(c, digest));
  ASSERT_TRUE(c.loop().RunUntil([&] { return AllHold(ac, digest, {2, 3, 4}); }, 2min, 200ms));
  uint64_t corrupt = 0;
  for (int i : {2, 3, 4}) {
    corrupt += ac.Corrupt(i);
    EXPECT_EQ(*Sha256File(ac.node(i).files->PathOf(digest)), digest);
  }
  EXPECT_GE(corrupt, 1u);
  EXPECT_LE(corrupt, 3u * 2) << "a shunned peer was asked again";
}

// A complete copy changed on this node's disk after it was verified (rot, or
// someone with write access) is hashed again before an install hook gets its
// path: found changed, it is removed and fetched again from a peer.
TEST(ArtifactSim, AChangedLocalCopyIsNeverHandedToAnInstallHook) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  ArtCluster ac(SeedOr(27), 3);
  Cluster& c = ac.cluster();
  ASSERT_TRUE(c.FormAll(200ms));
  const std::string digest = OnlyNode1Holds(ac, 3u << 20, 9);
  ASSERT_TRUE(AllHold(ac, digest, {0, 1}));
  auto need = [&](int i, std::string* progress = nullptr) { return ac.node(i).artifacts->Need(digest, progress); };

  // An intact copy: checked first, then handed out; asked again, checked again.
  std::string progress;
  EXPECT_FALSE(need(0, &progress));
  EXPECT_EQ(progress, "checking this node's copy against its digest");
  std::optional<std::string> path;
  ASSERT_TRUE(c.loop().RunUntil([&] { return (path = need(0)).has_value(); }, 10s, 100ms));
  EXPECT_EQ(*path, ac.node(0).files->PathOf(digest));
  EXPECT_FALSE(need(0)) << "a second install gets a second check";

  // Node 1's copy changes by one byte.
  const std::string copy = ac.node(1).files->PathOf(digest);
  std::filesystem::permissions(copy, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
  {
    std::fstream f(copy, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(12345);
    f.put('\x02');
  }
  ASSERT_NE(*Sha256File(copy), digest);
  ASSERT_TRUE(c.loop().RunUntil([&] { return (path = need(1)).has_value(); }, 2min, 100ms));
  EXPECT_EQ(*Sha256File(*path), digest) << "the path handed out holds the artifact's bytes";
  EXPECT_EQ(ac.node(1).artifacts->stats().corrupt_copies, 1u);
  EXPECT_EQ(ac.node(0).artifacts->stats().corrupt_copies, 0u);
}

TEST(ArtifactSim, OriginCutOffAfterOnePeerHasItAndResumeAfterACrash) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  ArtCluster ac(SeedOr(33), 5);
  Cluster& c = ac.cluster();
  ASSERT_TRUE(c.FormAll(200ms));
  const std::string digest = OnlyNode1Holds(ac, 5u << 20, 6);
  ASSERT_TRUE(AllHold(ac, digest, {1}));
  c.Partition({{0}, {1, 2, 3, 4}});
  Apply(ac, 1, Doc(c, digest));
  // Node 4 crashes with part of the file and comes back: it keeps its chunks.
  ASSERT_TRUE(c.loop().RunUntil(
      [&] {
        auto p = ac.node(4).files->Partial();
        return !p.empty() || ac.node(4).files->Has(digest);
      },
      1min, 5ms));
  c.Crash(4);
  c.loop().RunFor(2s);
  c.Restart(4);
  ASSERT_TRUE(c.loop().RunUntil([&] { return AllHold(ac, digest, {1, 2, 3, 4}); }, 2min, 200ms));
  for (int i : {1, 2, 3, 4}) EXPECT_EQ(*Sha256File(ac.node(i).files->PathOf(digest)), digest);
  EXPECT_EQ(ac.Served(0), 5u << 20) << "the origin served only node 1";
}

// Two sites 100 ms apart, 2 ms within each. Full copies sit on the origin
// and one more node at site A and on one node at site B; a newcomer at each
// site then takes its chunks from the holder at its own site (the origin,
// known to every fetcher, is spared whenever another holder has the chunk).
TEST(ArtifactSim, ChunksComeFromTheNearestHolder) {
  spdlog::set_level(std::getenv("STARLING_VERBOSE") ? spdlog::level::debug : spdlog::level::off);
  constexpr int kNodes = 5;  // site A: n0 (origin), n1, n3; site B: n2, n4
  constexpr size_t kBytes = 8u << 20;
  ArtCluster ac(SeedOr(41), kNodes);
  Cluster& c = ac.cluster();
  auto site = [](int i) { return i == 2 || i == 4 ? 1 : 0; };
  c.SetLatency([&](int from, int to) { return site(from) == site(to) ? 1ms : 50ms; });
  ASSERT_TRUE(c.FormAll(200ms));
  // Each member probes each other a few times: the coordinates settle.
  c.loop().RunFor(60s);
  const auto self = c.node(4).CoordinateOf(c.name(4));
  const auto near = c.node(4).CoordinateOf(c.name(2)), far = c.node(4).CoordinateOf(c.name(1));
  ASSERT_TRUE(near && far && self);
  EXPECT_LT(self->DistanceTo(*near), self->DistanceTo(*far) / 5);
  const std::string digest = AddOn(ac, 0, Noise(ac.root() + "/n.bin", kBytes, 41));
  auto doc = [&](const std::vector<int>& holders) {
    Json nodes = Json::object();
    for (int i = 0; i < kNodes; ++i) {
      nodes[c.name(i)] = {{"lifecycle", "commissioned"}};
      if (std::count(holders.begin(), holders.end(), i)) nodes[c.name(i)]["roles"] = {"holder"};
    }
    return Json{{"roles", {"holder"}}, {"nodes", nodes},
                {"packages", {{"big", {{"version", "1"}, {"artifact", digest}, {"roles", {"holder"}}}}}}};
  };
  Apply(ac, 0, doc({1, 2}));
  ASSERT_TRUE(c.loop().RunUntil([&] { return AllHold(ac, digest, {1, 2}); }, 5min, 200ms));
  Apply(ac, 0, doc({1, 2, 3, 4}));
  ASSERT_TRUE(c.loop().RunUntil([&] { return AllHold(ac, digest, {3, 4}); }, 5min, 200ms));
  for (int i : {3, 4}) {
    uint64_t same = 0, total = 0;
    for (const auto& [peer, bytes] : ac.node(i).artifacts->stats().fetched_from) {
      total += bytes;
      if (site(std::stoi(peer.substr(1))) == site(i)) same += bytes;
    }
    std::printf("nearest holder: %s took %.0f of %.0f MiB from its own site\n", c.name(i).c_str(), same / 1048576.0,
                total / 1048576.0);
    EXPECT_EQ(total, kBytes);
    EXPECT_GE(same, kBytes * 7 / 8) << c.name(i) << " fetched across sites while its own site had a copy";
  }
}

}  // namespace
}  // namespace starling::node
