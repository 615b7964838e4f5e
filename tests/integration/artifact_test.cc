// Artifacts on real daemons: a file added on one node reaches the nodes whose
// packages name it, fetched in chunks from every node that has chunks, each
// chunk checked against the catalog. The checks hash the files in each data
// dir with sha256sum, so they see what landed on disk, not what the daemons
// say; bytes served per node come from each node's `artifact ls`.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "local_cluster.h"

namespace starling::itest {
namespace {

using json = nlohmann::json;

// `bytes` of reproducible noise (xorshift), so chunks differ from each other.
std::string WriteNoise(const std::string& path, size_t bytes, uint64_t seed) {
  std::ofstream out(path, std::ios::binary);
  std::vector<uint64_t> buf(1 << 16);
  uint64_t x = seed | 1;
  for (size_t done = 0; done < bytes;) {
    for (auto& w : buf) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      w = x;
    }
    size_t n = std::min(bytes - done, buf.size() * sizeof(uint64_t));
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n));
    done += n;
  }
  return path;
}

std::string Sha256Of(const std::string& path) {
  CommandResult r = RunCommand({"/usr/bin/sha256sum", path}, 60s);
  if (r.exit_code != 0) return "";
  return "sha256:" + r.out.substr(0, 64);
}

std::string StoredPath(const LocalCluster& c, int i, const std::string& digest) {
  return c.node(i).dir + "/artifacts/sha256/" + digest.substr(7);
}

bool Holds(const LocalCluster& c, int i, const std::string& digest) {
  return std::filesystem::exists(StoredPath(c, i, digest));
}

std::optional<json> Ls(const LocalCluster& c, int i) {
  CommandResult r = c.Cli(i, {"artifact", "ls", "--format", "json"});
  if (r.exit_code != 0) return std::nullopt;
  return json::parse(r.out, nullptr, false);
}

// Every node commissioned; the package goes to `roles` (everywhere when empty).
std::string Doc(int nodes, const std::string& digest, const std::string& roles = "") {
  std::string doc = "roles: [first]\nnodes:\n";
  for (int i = 0; i < nodes; ++i)
    doc += "  node" + std::to_string(i) + ": {lifecycle: commissioned" + (i == 1 ? ", roles: [first]" : "") + "}\n";
  doc += "packages:\n  big:\n    version: \"1\"\n    artifact: \"" + digest + "\"\n";
  if (!roles.empty()) doc += "    roles: [" + roles + "]\n";
  return doc;
}

std::string Add(LocalCluster& c, int i, const std::string& file) {
  CommandResult r = c.Cli(i, {"artifact", "add", file, "--name", "big", "--version", "1", "--format", "json"}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = json::parse(r.out, nullptr, false);
  return j.is_object() ? j.value("digest", "") : "";
}

void Apply(LocalCluster& c, int i, const std::string& root, const std::string& doc) {
  const std::string path = root + "/doc.yaml";
  std::ofstream(path) << doc;
  CommandResult r = c.Cli(i, {"apply", "-f", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// Adds `bytes` of noise on node0 and makes node1 (role `first`) fetch it; the digest.
std::string OnlyNode1Holds(LocalCluster& c, int nodes, size_t bytes, uint64_t seed) {
  const std::string digest = Add(c, 0, WriteNoise(c.root() + "/art.bin", bytes, seed));
  EXPECT_FALSE(digest.empty());
  Apply(c, 0, c.root(), Doc(nodes, digest, "first"));
  EXPECT_TRUE(WaitFor([&] { return Holds(c, 1, digest); }, 60s));
  return digest;
}

TEST(Artifacts, HundredMegabytesReachTenNodesMostlyFromPeers) {
  constexpr int kNodes = 10;
  constexpr size_t kBytes = 100u << 20;
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(kNodes, 60s));
  const std::string file = WriteNoise(c.root() + "/big.bin", kBytes, 42);
  const std::string digest = Add(c, 0, file);
  ASSERT_EQ(digest, Sha256Of(file));
  Apply(c, 3, c.root(), Doc(kNodes, digest));

  const auto start = std::chrono::steady_clock::now();
  bool everywhere = WaitFor(
      [&] {
        for (int i : c.All())
          if (!Holds(c, i, digest)) return false;
        return true;
      },
      180s, 500ms);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string missing;
  for (int i : c.All())
    if (!Holds(c, i, digest)) missing += " " + c.node(i).name;
  ASSERT_TRUE(everywhere) << "not fetched by:" << missing;
  for (int i : c.All()) EXPECT_EQ(Sha256Of(StoredPath(c, i, digest)), digest) << c.node(i).name;

  uint64_t total = 0, origin = 0;
  std::printf("100 MiB to %d nodes in %.1f s; bytes served per node:\n", kNodes - 1, took);
  for (int i : c.All()) {
    auto ls = Ls(c, i);
    ASSERT_TRUE(ls && ls->is_object());
    const uint64_t served = ls->value("bytes_served", uint64_t{0});
    std::printf("  %-7s served %6.1f MiB, fetched %6.1f MiB\n", c.node(i).name.c_str(), served / 1048576.0,
                ls->value("bytes_fetched", uint64_t{0}) / 1048576.0);
    total += served;
    if (i == 0) origin = served;
  }
  std::printf("  origin share %.1f %% of %.1f MiB served\n", 100.0 * origin / total, total / 1048576.0);
  EXPECT_GE(total, uint64_t{kNodes - 1} * kBytes);
  EXPECT_LT(origin * 2, total) << "the origin served half or more of all bytes";

  // Every node lists the artifact, held by all ten.
  auto ls = Ls(c, 5);
  ASSERT_TRUE(ls);
  ASSERT_EQ((*ls)["artifacts"].size(), 1u);
  EXPECT_EQ((*ls)["artifacts"][0]["holders"].size(), size_t{kNodes});
  EXPECT_EQ((*ls)["artifacts"][0]["local"], "complete");
}

TEST(Artifacts, CorruptPeerIsDetectedAndTheChunkFetchedElsewhere) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(4, 30s));
  const std::string digest = OnlyNode1Holds(c, 4, 6u << 20, 7);
  ASSERT_TRUE(Holds(c, 1, digest));
  EXPECT_FALSE(Holds(c, 2, digest));
  // Rot on node1's disk: one byte in every chunk.
  const std::string rotten = StoredPath(c, 1, digest);
  ::chmod(rotten.c_str(), 0644);
  {
    std::fstream f(rotten, std::ios::in | std::ios::out | std::ios::binary);
    for (size_t off = 100; off < (6u << 20); off += 1u << 20) {
      f.seekp(static_cast<std::streamoff>(off));
      f.put('\x5a');
    }
  }
  ASSERT_NE(Sha256Of(rotten), digest);
  // Now everyone needs it: node1 looks like the best source, and lies.
  Apply(c, 0, c.root(), Doc(4, digest));
  ASSERT_TRUE(WaitFor([&] { return Holds(c, 2, digest) && Holds(c, 3, digest); }, 90s));
  EXPECT_EQ(Sha256Of(StoredPath(c, 2, digest)), digest);
  EXPECT_EQ(Sha256Of(StoredPath(c, 3, digest)), digest);
  uint64_t corrupt = 0;
  for (int i : {2, 3}) {
    auto ls = Ls(c, i);
    ASSERT_TRUE(ls);
    corrupt += ls->value("corrupt_chunks", uint64_t{0});
  }
  EXPECT_GE(corrupt, 1u) << "nobody noticed node1's corrupt chunks";
  const std::string logs = c.LogOf(2, 100000) + c.LogOf(3, 100000);
  EXPECT_NE(logs.find("from node1 does not match its digest"), std::string::npos);
}

TEST(Artifacts, OriginStoppedAfterOnePeerHasItDoesNotStopTheRest) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(5, 30s));
  const std::string digest = OnlyNode1Holds(c, 5, 20u << 20, 9);
  ASSERT_TRUE(Holds(c, 1, digest));
  c.Kill(0);
  Apply(c, 1, c.root(), Doc(5, digest));
  ASSERT_TRUE(WaitFor(
      [&] {
        for (int i : {2, 3, 4})
          if (!Holds(c, i, digest)) return false;
        return true;
      },
      90s));
  for (int i : {1, 2, 3, 4}) EXPECT_EQ(Sha256Of(StoredPath(c, i, digest)), digest) << c.node(i).name;
}

TEST(Artifacts, InstallHookGetsTheVerifiedLocalPath) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3, 30s, {"--hooks-dir", STARLING_EXAMPLE_HOOKS}));
  const std::string digest = Add(c, 2, WriteNoise(c.root() + "/web.tar", 3u << 20, 11));
  ASSERT_FALSE(digest.empty());
  std::string doc =
      "nodes:\n  node0: {lifecycle: commissioned}\n  node1: {lifecycle: commissioned}\n"
      "  node2: {lifecycle: commissioned}\n"
      "packages:\n  web:\n    version: \"1\"\n    artifact: \"" + digest + "\"\n"
      "    hooks: {install: web-install, verify: web-verify, remove: web-remove}\n"
      "policy: {batch: \"100%\", node_deadline: 60s}\n";
  Apply(c, 0, c.root(), doc);
  ASSERT_EQ(c.Cli(1, {"rollout", "start"}).exit_code, 0);
  CommandResult watch = c.Cli(1, {"rollout", "status", "--watch"}, 90s);
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  // The example hook hashed $STARLING_ARTIFACT_PATH itself and wrote what it found.
  for (int i : c.All()) {
    std::ifstream in(c.node(i).dir + "/example-state/artifact-web");
    std::string seen;
    in >> seen;
    EXPECT_EQ(seen, digest) << c.node(i).name;
  }
}

TEST(Artifacts, ApplyRefusesAnUnknownDigestAndAddRefusesABadPath) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(1, 20s));
  const std::string unknown = "sha256:" + std::string(64, 'a');
  std::ofstream(c.root() + "/doc.yaml") << Doc(1, unknown);
  CommandResult r = c.Cli(0, {"apply", "-f", c.root() + "/doc.yaml"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("packages.big.artifact: unknown artifact " + unknown), std::string::npos) << r.err;

  r = c.Cli(0, {"artifact", "add", c.root() + "/nope.bin"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("nope.bin"), std::string::npos) << r.err;
  r = c.Cli(0, {"artifact", "add", c.root()});
  EXPECT_NE(r.exit_code, 0);

  // Adding the same content twice gives the same digest and one catalog entry.
  const std::string file = WriteNoise(c.root() + "/small.bin", 3000, 1);
  const std::string first = Add(c, 0, file);
  EXPECT_EQ(Add(c, 0, file), first);
  auto ls = Ls(c, 0);
  ASSERT_TRUE(ls);
  ASSERT_EQ((*ls)["artifacts"].size(), 1u);
  EXPECT_EQ((*ls)["artifacts"][0]["size"], 3000);
  EXPECT_EQ((*ls)["artifacts"][0]["referenced"], false);
}

TEST(Artifacts, UnreferencedArtifactIsRemovedAfterTheGrace) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(2, 20s, {"--artifact-grace", "2s"}));
  const std::string file = WriteNoise(c.root() + "/art.bin", 2u << 20, 3);
  const std::string digest = Add(c, 0, file);
  Apply(c, 0, c.root(), Doc(2, digest));
  ASSERT_TRUE(WaitFor([&] { return Holds(c, 1, digest); }, 60s));
  // The package goes away: nothing names the artifact any more.
  std::ofstream(c.root() + "/drop.yaml") << "packages: null\n";
  ASSERT_EQ(c.Cli(0, {"apply", "-f", c.root() + "/drop.yaml"}).exit_code, 0);
  // Removed on both nodes, the origin's copy included, once 2 s unreferenced.
  EXPECT_TRUE(WaitFor([&] { return !Holds(c, 0, digest) && !Holds(c, 1, digest); }, 30s));
}

}  // namespace
}  // namespace starling::itest
