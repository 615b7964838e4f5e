// FileArtifactStore on a real directory: adding files, manifests and their JSON
// form, chunked downloads (out of order, resumed after a restart, tampered),
// removal and listing.
#include "file_artifact_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

namespace starling::node {
namespace {

constexpr size_t kChunk = kArtifactChunkBytes;
const std::string kEmptyDigest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

Bytes Pattern(size_t n, uint64_t seed) {
  SeededRandom rng(seed);
  Bytes out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng.Next());
  return out;
}

void WriteFile(const std::string& path, const Bytes& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

Bytes ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool Exists(const std::string& path) { return std::filesystem::exists(path); }

ByteView Slice(const Bytes& b, uint64_t offset, size_t len) { return ByteView(b.data() + offset, len); }

std::string Hex(const std::string& digest) { return digest.substr(7); }

class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/starling-artifacts-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // A file of `n` bytes outside any store, its content kept for comparison.
  std::string Source(const std::string& name, const Bytes& content) {
    const std::string path = root_ + "/" + name;
    WriteFile(path, content);
    return path;
  }

  // A store under the temp dir, initialised.
  FileArtifactStore Store(const std::string& name) {
    FileArtifactStore s(root_ + "/" + name);
    Status st = s.Init();
    EXPECT_TRUE(st.ok()) << st.ToString();
    return s;
  }

  // Content of 3.5 chunks added to store `src`; the manifest to download.
  ArtifactManifest AddThreeAndAHalf(FileArtifactStore& src) {
    content_ = Pattern(3 * kChunk + kChunk / 2, 42);
    auto m = src.AddFile(Source("pkg.tar", content_), "web", "1.2.3");
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : ArtifactManifest{};
  }

  std::string root_;
  Bytes content_;
};

TEST(Sha256, KnownVectorsAndDigestForm) {
  const std::string abc = "abc";
  EXPECT_EQ(Sha256Digest(ByteView(reinterpret_cast<const uint8_t*>(abc.data()), abc.size())),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Digest({}), kEmptyDigest);
  EXPECT_TRUE(IsArtifactDigest(kEmptyDigest));
  EXPECT_FALSE(IsArtifactDigest("sha256:" + std::string(63, 'a')));
  EXPECT_FALSE(IsArtifactDigest("sha256:" + std::string(65, 'a')));
  EXPECT_FALSE(IsArtifactDigest("sha256:" + std::string(64, 'A')));
  EXPECT_FALSE(IsArtifactDigest("sha256:" + std::string(63, 'a') + "g"));
  EXPECT_FALSE(IsArtifactDigest("sha512:" + std::string(64, 'a')));
  EXPECT_FALSE(IsArtifactDigest(std::string(64, 'a')));
}

TEST_F(ArtifactStoreTest, Sha256FileStreamsAndNamesThePath) {
  const Bytes content = Pattern(2 * kChunk + 17, 7);
  auto d = Sha256File(Source("f", content));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, Sha256Digest(content));
  auto missing = Sha256File(root_ + "/nope");
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
  EXPECT_NE(missing.status().message().find(root_ + "/nope"), std::string::npos) << missing.status().message();
  auto dir = Sha256File(root_);
  EXPECT_EQ(dir.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(dir.status().message().find(root_), std::string::npos) << dir.status().message();
}

TEST_F(ArtifactStoreTest, AddGivesTheManifestOfTheContent) {
  FileArtifactStore store = Store("a");
  const ArtifactManifest m = AddThreeAndAHalf(store);
  const std::string src = root_ + "/pkg.tar";

  auto file_digest = Sha256File(src);
  ASSERT_TRUE(file_digest.ok());
  EXPECT_EQ(m.digest, *file_digest);
  EXPECT_EQ(m.name, "web");
  EXPECT_EQ(m.version, "1.2.3");
  EXPECT_EQ(m.size, content_.size());
  EXPECT_EQ(m.chunk_size, kArtifactChunkBytes);
  EXPECT_EQ(m.added_by, "");
  EXPECT_EQ(m.added_us, 0);
  ASSERT_EQ(m.ChunkCount(), 4u);
  ASSERT_EQ(m.chunks.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(m.ChunkOffset(i), i * kChunk);
    EXPECT_EQ(m.ChunkLength(i), i < 3 ? kChunk : kChunk / 2);
    EXPECT_EQ(m.chunks[i], Sha256Digest(Slice(content_, i * kChunk, m.ChunkLength(i)))) << "chunk " << i;
  }
  EXPECT_EQ(m.ChunkLength(4), 0u);
  EXPECT_TRUE(m.Validate().ok()) << m.Validate().ToString();

  EXPECT_TRUE(store.Has(m.digest));
  EXPECT_EQ(store.PathOf(m.digest), root_ + "/a/sha256/" + Hex(m.digest));
  EXPECT_EQ(ReadFile(store.PathOf(m.digest)), content_);
  struct stat st {};
  ASSERT_EQ(stat(store.PathOf(m.digest).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  EXPECT_EQ(store.Complete(), std::vector<std::string>{m.digest});
  EXPECT_TRUE(store.Partial().empty());
  EXPECT_EQ(store.DiskBytes(), content_.size());
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/a/tmp"));
  // The source is left as it was.
  EXPECT_EQ(ReadFile(src), content_);
}

TEST_F(ArtifactStoreTest, AddTwiceIsIdempotent) {
  FileArtifactStore store = Store("a");
  const ArtifactManifest first = AddThreeAndAHalf(store);
  auto second = store.AddFile(root_ + "/pkg.tar", "web", "1.2.3");
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(*second, first);
  EXPECT_EQ(store.Complete(), std::vector<std::string>{first.digest});
  EXPECT_EQ(ReadFile(store.PathOf(first.digest)), content_);
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/a/tmp"));
  EXPECT_EQ(store.DiskBytes(), content_.size());
}

TEST_F(ArtifactStoreTest, AddRefusesWhatIsNotARegularFileNamingThePath) {
  FileArtifactStore store = Store("a");
  const std::string missing = root_ + "/no-such-file";
  auto r = store.AddFile(missing, "web", "1");
  EXPECT_EQ(r.status().code(), Status::Code::kNotFound);
  EXPECT_NE(r.status().message().find(missing), std::string::npos) << r.status().message();

  const std::string dir = root_ + "/a-directory";
  ASSERT_TRUE(std::filesystem::create_directory(dir));
  r = store.AddFile(dir, "web", "1");
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find(dir), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("not a regular file"), std::string::npos) << r.status().message();

  const std::string ok = Source("ok", Pattern(10, 1));
  EXPECT_EQ(store.AddFile(ok, "", "1").status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store.AddFile(ok, "we\nb", "1").status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store.AddFile(ok, std::string(129, 'n'), "1").status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store.AddFile(ok, "web", std::string(65, '1')).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store.AddFile(ok, "web", std::string("1\0", 2)).status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(store.Complete().empty());
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/a/tmp"));
}

TEST_F(ArtifactStoreTest, BeginOnAFreshManifestGivesAllFalse) {
  FileArtifactStore src = Store("a");
  const ArtifactManifest m = AddThreeAndAHalf(src);
  FileArtifactStore dst = Store("b");
  auto good = dst.Begin(m);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(*good, std::vector<bool>(4, false));
  EXPECT_FALSE(dst.Has(m.digest));
  EXPECT_TRUE(dst.Complete().empty());
  EXPECT_EQ(dst.Partial(), std::vector<std::string>{m.digest});
  EXPECT_EQ(std::filesystem::file_size(root_ + "/b/partial/" + Hex(m.digest)), m.size);
  // A complete artifact: nothing to fetch.
  auto done = src.Begin(m);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(*done, std::vector<bool>(4, true));
  EXPECT_TRUE(src.Partial().empty());
}

TEST_F(ArtifactStoreTest, WriteChunkRefusesWrongDataWithoutWriting) {
  FileArtifactStore src = Store("a");
  const ArtifactManifest m = AddThreeAndAHalf(src);
  FileArtifactStore dst = Store("b");
  // Not begun yet.
  EXPECT_EQ(dst.WriteChunk(m, 0, Slice(content_, 0, kChunk)).code(), Status::Code::kNotFound);
  ASSERT_TRUE(dst.Begin(m).ok());
  const std::string partial = root_ + "/b/partial/" + Hex(m.digest);
  const Bytes before = ReadFile(partial);

  Bytes bad(content_.begin() + kChunk, content_.begin() + 2 * kChunk);
  bad[1000] ^= 1;
  Status s = dst.WriteChunk(m, 1, bad);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_EQ(s.message(), "chunk 1 of " + m.digest + ": digest mismatch");
  // The right bytes for another chunk, or the wrong length, are refused too.
  EXPECT_EQ(dst.WriteChunk(m, 2, Slice(content_, kChunk, kChunk)).code(), Status::Code::kCorruption);
  s = dst.WriteChunk(m, 3, Slice(content_, 3 * kChunk, kChunk / 2 - 1));
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("chunk 3 of " + m.digest), std::string::npos) << s.message();
  EXPECT_EQ(dst.WriteChunk(m, 4, Slice(content_, 0, 0)).code(), Status::Code::kInvalidArgument);

  EXPECT_EQ(ReadFile(partial), before);
  auto good = dst.Begin(m);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, std::vector<bool>(4, false));
}

TEST_F(ArtifactStoreTest, ChunksWrittenOutOfOrderThenFinishGiveTheOriginal) {
  FileArtifactStore src = Store("a");
  const ArtifactManifest m = AddThreeAndAHalf(src);
  FileArtifactStore dst = Store("b");
  ASSERT_TRUE(dst.Begin(m).ok());
  for (size_t i : {3u, 0u, 2u, 1u}) {
    auto chunk = src.ReadChunk(m, i);
    ASSERT_TRUE(chunk.ok()) << chunk.status().ToString();
    Status s = dst.WriteChunk(m, i, *chunk);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  auto good = dst.Begin(m);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, std::vector<bool>(4, true));
  Status s = dst.Finish(m);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(dst.Has(m.digest));
  EXPECT_EQ(ReadFile(dst.PathOf(m.digest)), content_);
  struct stat st {};
  ASSERT_EQ(stat(dst.PathOf(m.digest).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  EXPECT_EQ(dst.Complete(), std::vector<std::string>{m.digest});
  EXPECT_TRUE(dst.Partial().empty());
  // Late chunks and a repeated Finish change nothing.
  EXPECT_TRUE(dst.WriteChunk(m, 0, Slice(content_, 0, kChunk)).ok());
  EXPECT_TRUE(dst.Finish(m).ok());
  EXPECT_TRUE(dst.Partial().empty());
}

TEST_F(ArtifactStoreTest, ResumeAfterRestartReportsTheChunksAlreadyThere) {
  FileArtifactStore src = Store("a");
  const ArtifactManifest m = AddThreeAndAHalf(src);
  {
    FileArtifactStore dst = Store("b");
    ASSERT_TRUE(dst.Begin(m).ok());
    ASSERT_TRUE(dst.WriteChunk(m, 0, Slice(content_, 0, kChunk)).ok());
    ASSERT_TRUE(dst.WriteChunk(m, 2, Slice(content_, 2 * kChunk, kChunk)).ok());
  }
  FileArtifactStore again = Store("b");
  EXPECT_EQ(again.Partial(), std::vector<std::string>{m.digest});
  auto good = again.Begin(m);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(*good, (std::vector<bool>{true, false, true, false}));

  // A chunk damaged on disk (a torn write) is reported for fetching again.
  {
    std::fstream f(root_ + "/b/partial/" + Hex(m.digest), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(2 * kChunk + 5);
    f.put(static_cast<char>(content_[2 * kChunk + 5] ^ 0xff));
  }
  good = again.Begin(m);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, (std::vector<bool>{true, false, false, false}));

  for (size_t i : {1u, 2u, 3u})
    ASSERT_TRUE(again.WriteChunk(m, i, Slice(content_, i * kChunk, m.ChunkLength(i))).ok());
  ASSERT_TRUE(again.Finish(m).ok());
  EXPECT_EQ(ReadFile(again.PathOf(m.digest)), content_);
}

TEST_F(ArtifactStoreTest, ChunksOfZerosAreGoodInAFreshPartialFile) {
  // The partial file is sparse: a chunk that is all zeros is already right.
  Bytes content = Pattern(2 * kChunk + 100, 3);
  std::fill(content.begin() + kChunk, content.begin() + 2 * kChunk, 0);
  FileArtifactStore src = Store("a");
  auto m = src.AddFile(Source("zeros", content), "zeros", "");
  ASSERT_TRUE(m.ok());
  FileArtifactStore dst = Store("b");
  ASSERT_TRUE(dst.Begin(*m).ok());
  auto good = dst.Begin(*m);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, (std::vector<bool>{false, true, false}));
  ASSERT_TRUE(dst.WriteChunk(*m, 0, Slice(content, 0, kChunk)).ok());
  ASSERT_TRUE(dst.WriteChunk(*m, 2, Slice(content, 2 * kChunk, 100)).ok());
  ASSERT_TRUE(dst.Finish(*m).ok());
  EXPECT_EQ(ReadFile(dst.PathOf(m->digest)), content);
}

TEST_F(ArtifactStoreTest, ADownloadResumesUnderAManifestWithAnotherChunkSize) {
  FileArtifactStore src = Store("a");
  const ArtifactManifest m = AddThreeAndAHalf(src);
  FileArtifactStore dst = Store("b");
  ASSERT_TRUE(dst.Begin(m).ok());
  ASSERT_TRUE(dst.WriteChunk(m, 1, Slice(content_, kChunk, kChunk)).ok());

  ArtifactManifest small = m;
  small.chunk_size = kMinArtifactChunkBytes;
  small.chunks.clear();
  for (size_t i = 0; i < small.ChunkCount(); ++i)
    small.chunks.push_back(Sha256Digest(Slice(content_, small.ChunkOffset(i), small.ChunkLength(i))));
  ASSERT_TRUE(small.Validate().ok()) << small.Validate().ToString();
  auto good = dst.Begin(small);
  ASSERT_TRUE(good.ok());
  ASSERT_EQ(good->size(), small.ChunkCount());
  const size_t per = kChunk / kMinArtifactChunkBytes;
  for (size_t i = 0; i < good->size(); ++i) EXPECT_EQ((*good)[i], i >= per && i < 2 * per) << "chunk " << i;
}

TEST_F(ArtifactStoreTest, FinishRefusesATamperedPartialFileAndRemovesIt) {
  FileArtifactStore src = Store("a");
  const ArtifactManifest m = AddThreeAndAHalf(src);
  FileArtifactStore dst = Store("b");
  EXPECT_EQ(dst.Finish(m).code(), Status::Code::kNotFound);
  ASSERT_TRUE(dst.Begin(m).ok());
  for (size_t i = 0; i < m.ChunkCount(); ++i)
    ASSERT_TRUE(dst.WriteChunk(m, i, Slice(content_, i * kChunk, m.ChunkLength(i))).ok());
  const std::string partial = root_ + "/b/partial/" + Hex(m.digest);
  {
    std::fstream f(partial, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3 * kChunk + 10);
    f.write("tampered", 8);
  }
  Status s = dst.Finish(m);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find(m.digest), std::string::npos) << s.message();
  EXPECT_FALSE(Exists(partial));
  EXPECT_FALSE(dst.Has(m.digest));
  EXPECT_TRUE(dst.Partial().empty());
  EXPECT_TRUE(dst.Complete().empty());
  // It starts over.
  auto good = dst.Begin(m);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, std::vector<bool>(4, false));
}

TEST_F(ArtifactStoreTest, ReadChunk) {
  FileArtifactStore src = Store("a");
  const ArtifactManifest m = AddThreeAndAHalf(src);
  auto last = src.ReadChunk(m, 3);
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  EXPECT_EQ(last->size(), kChunk / 2);
  EXPECT_EQ(*last, Bytes(content_.begin() + 3 * kChunk, content_.end()));
  auto first = src.ReadChunk(m, 0);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, Bytes(content_.begin(), content_.begin() + kChunk));
  EXPECT_EQ(src.ReadChunk(m, 4).status().code(), Status::Code::kInvalidArgument);

  FileArtifactStore dst = Store("b");
  EXPECT_EQ(dst.ReadChunk(m, 0).status().code(), Status::Code::kNotFound);
  // From the partial file: what was written, zeros elsewhere.
  ASSERT_TRUE(dst.Begin(m).ok());
  ASSERT_TRUE(dst.WriteChunk(m, 2, Slice(content_, 2 * kChunk, kChunk)).ok());
  auto two = dst.ReadChunk(m, 2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(*two, Bytes(content_.begin() + 2 * kChunk, content_.begin() + 3 * kChunk));
  auto three = dst.ReadChunk(m, 3);
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(*three, Bytes(kChunk / 2, 0));
}

// A manifest as the log would carry it, and every way FromJson must refuse one.
TEST_F(ArtifactStoreTest, ManifestJsonRoundTripsAndRefusesBadInput) {
  FileArtifactStore store = Store("a");
  ArtifactManifest m = AddThreeAndAHalf(store);
  m.added_by = "node-1";
  m.added_us = 1'700'000'000'000'000;
  const store::Json j = m.ToJson();
  EXPECT_EQ(j.size(), 8u);
  EXPECT_EQ(j["digest"], m.digest);
  EXPECT_EQ(j["chunks"].size(), 4u);
  auto back = ArtifactManifest::FromJson(j);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, m);
  // And through text, as it travels.
  back = ArtifactManifest::FromJson(store::Json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, m);
  // A field from a newer node is ignored; an empty version is fine.
  store::Json extra = j;
  extra["compression"] = "zstd";
  extra["version"] = "";
  EXPECT_TRUE(ArtifactManifest::FromJson(extra).ok());

  const std::string a64(64, 'a');
  struct Case {
    std::string what;
    std::function<void(store::Json&)> mutate;
    std::string expect;  // in the message
  };
  const std::vector<Case> cases = {
      {"not an object", [](store::Json& x) { x = store::Json::array({1, 2}); }, "not a JSON object"},
      {"no digest", [](store::Json& x) { x.erase("digest"); }, "\"digest\""},
      {"digest not a string", [](store::Json& x) { x["digest"] = 5; }, "\"digest\""},
      {"short digest", [](store::Json& x) { x["digest"] = "sha256:xyz"; }, "malformed digest"},
      {"uppercase digest", [](store::Json& x) { x["digest"] = "sha256:" + std::string(64, 'A'); }, "malformed digest"},
      {"chunk_size too small", [](store::Json& x) { x["chunk_size"] = 1000; }, "chunk_size 1000 is outside"},
      {"chunk_size too large", [](store::Json& x) { x["chunk_size"] = 32u << 20; }, "chunk_size 33554432 is outside"},
      {"chunk_size past 32 bits", [](store::Json& x) { x["chunk_size"] = uint64_t{1} << 33; }, "is outside"},
      {"chunk_size negative", [](store::Json& x) { x["chunk_size"] = -1; }, "\"chunk_size\""},
      {"chunk_size a float", [](store::Json& x) { x["chunk_size"] = 1048576.0; }, "\"chunk_size\""},
      {"chunk_size a string", [](store::Json& x) { x["chunk_size"] = "1048576"; }, "\"chunk_size\""},
      {"a chunk missing", [](store::Json& x) { x["chunks"].erase(3); }, "3 chunk digests for 4 chunks"},
      {"a chunk too many", [&](store::Json& x) { x["chunks"].push_back("sha256:" + a64); },
       "5 chunk digests for 4 chunks"},
      {"size disagrees with chunks", [](store::Json& x) { x["size"] = 5u << 20; }, "4 chunk digests for 5 chunks"},
      {"bad chunk digest", [&](store::Json& x) { x["chunks"][2] = "sha256:" + a64.substr(1); },
       "chunk 2 has a malformed digest"},
      {"chunk not a string", [](store::Json& x) { x["chunks"][1] = 7; }, "chunk 1 is not a string"},
      {"chunks not a list", [](store::Json& x) { x["chunks"] = "none"; }, "\"chunks\""},
      {"size over 1 TiB", [](store::Json& x) { x["size"] = (uint64_t{1} << 40) + 1; }, "over 1 TiB"},
      {"size negative", [](store::Json& x) { x["size"] = -5; }, "\"size\""},
      {"size a float", [](store::Json& x) { x["size"] = 3.5; }, "\"size\""},
      {"no size", [](store::Json& x) { x.erase("size"); }, "\"size\""},
      {"empty name", [](store::Json& x) { x["name"] = ""; }, "name"},
      {"name with a newline", [](store::Json& x) { x["name"] = "we\nb"; }, "name"},
      {"name too long", [](store::Json& x) { x["name"] = std::string(129, 'n'); }, "name"},
      {"name not UTF-8", [](store::Json& x) { x["name"] = "\xff\xfe"; }, "name"},
      {"name not a string", [](store::Json& x) { x["name"] = nullptr; }, "\"name\""},
      {"version with NUL", [](store::Json& x) { x["version"] = std::string("1\0", 2); }, "version"},
      {"version too long", [](store::Json& x) { x["version"] = std::string(65, '1'); }, "version"},
      {"no version", [](store::Json& x) { x.erase("version"); }, "\"version\""},
      {"added_by with a control character", [](store::Json& x) { x["added_by"] = "node\x1b"; }, "added_by"},
      {"added_us a string", [](store::Json& x) { x["added_us"] = "now"; }, "\"added_us\""},
      {"added_us past int64", [](store::Json& x) { x["added_us"] = ~uint64_t{0}; }, "\"added_us\""},
      {"one chunk that is not the content",
       [&](store::Json& x) {
         x["size"] = 100;
         x["chunks"] = store::Json::array({"sha256:" + a64});
       },
       "only chunk"},
      {"empty content with another digest",
       [](store::Json& x) {
         x["size"] = 0;
         x["chunks"] = store::Json::array();
       },
       "empty content"},
  };
  for (const auto& c : cases) {
    store::Json x = j;
    c.mutate(x);
    Result<ArtifactManifest> r = ArtifactManifest();
    EXPECT_NO_THROW(r = ArtifactManifest::FromJson(x)) << c.what;
    EXPECT_EQ(r.status().code(), Status::Code::kCorruption) << c.what;
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos)
        << c.what << ": " << r.status().message() << " (expected '" << c.expect << "')";
  }
}

TEST_F(ArtifactStoreTest, AnEmptyFileWorksEndToEnd) {
  FileArtifactStore src = Store("a");
  auto m = src.AddFile(Source("empty", {}), "empty", "0");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->digest, kEmptyDigest);
  EXPECT_EQ(m->size, 0u);
  EXPECT_EQ(m->ChunkCount(), 0u);
  EXPECT_TRUE(m->chunks.empty());
  EXPECT_TRUE(src.Has(m->digest));
  EXPECT_EQ(src.ReadChunk(*m, 0).status().code(), Status::Code::kInvalidArgument);
  auto back = ArtifactManifest::FromJson(m->ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, *m);

  FileArtifactStore dst = Store("b");
  auto good = dst.Begin(*m);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_TRUE(good->empty());
  EXPECT_EQ(dst.Partial(), std::vector<std::string>{m->digest});
  Status s = dst.Finish(*m);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(dst.Has(m->digest));
  EXPECT_TRUE(dst.Partial().empty());
  EXPECT_EQ(std::filesystem::file_size(dst.PathOf(m->digest)), 0u);
  EXPECT_EQ(dst.DiskBytes(), 0u);
}

TEST_F(ArtifactStoreTest, RemoveRemovesCompleteAndPartial) {
  FileArtifactStore store = Store("a");
  const ArtifactManifest m = AddThreeAndAHalf(store);
  // A partial file beside the complete one, as a crash between the two could leave.
  const std::string partial = root_ + "/a/partial/" + Hex(m.digest);
  WriteFile(partial, Bytes(10, 1));
  EXPECT_EQ(store.Partial(), std::vector<std::string>{m.digest});
  ASSERT_TRUE(Exists(store.PathOf(m.digest)));

  Status s = store.Remove(m.digest);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(Exists(store.PathOf(m.digest)));
  EXPECT_FALSE(Exists(partial));
  EXPECT_FALSE(store.Has(m.digest));
  EXPECT_TRUE(store.Complete().empty());
  EXPECT_TRUE(store.Partial().empty());
  EXPECT_EQ(store.DiskBytes(), 0u);
  EXPECT_TRUE(store.Remove(m.digest).ok());  // absent is fine
  EXPECT_EQ(store.Remove("sha256:../../etc").code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store.PathOf("sha256:../../etc"), "");
}

TEST_F(ArtifactStoreTest, CompleteAndPartialListTheirDigestsAndIgnoreOtherFiles) {
  FileArtifactStore src = Store("a");
  const ArtifactManifest big = AddThreeAndAHalf(src);
  auto one = src.AddFile(Source("one", Pattern(1000, 5)), "one", "1");
  auto two = src.AddFile(Source("two", Pattern(2000, 6)), "two", "2");
  ASSERT_TRUE(one.ok() && two.ok());

  FileArtifactStore dst = Store("b");
  ASSERT_TRUE(dst.AddFile(root_ + "/one", "one", "1").ok());
  ASSERT_TRUE(dst.AddFile(root_ + "/two", "two", "2").ok());
  ASSERT_TRUE(dst.Begin(big).ok());
  // Not ours: left alone and not listed.
  WriteFile(root_ + "/b/sha256/README", Bytes(5, 'x'));
  WriteFile(root_ + "/b/partial/" + std::string(64, 'A'), Bytes(7, 'x'));
  WriteFile(root_ + "/b/partial/" + std::string(63, 'a'), Bytes(7, 'x'));

  std::vector<std::string> complete = {one->digest, two->digest};
  std::sort(complete.begin(), complete.end());
  EXPECT_EQ(dst.Complete(), complete);
  EXPECT_EQ(dst.Partial(), std::vector<std::string>{big.digest});
  // The partial file counts at its full size.
  EXPECT_EQ(dst.DiskBytes(), 1000u + 2000u + big.size);

  // A download finished moves from one list to the other.
  for (size_t i = 0; i < big.ChunkCount(); ++i)
    ASSERT_TRUE(dst.WriteChunk(big, i, Slice(content_, i * kChunk, big.ChunkLength(i))).ok());
  ASSERT_TRUE(dst.Finish(big).ok());
  complete.push_back(big.digest);
  std::sort(complete.begin(), complete.end());
  EXPECT_EQ(dst.Complete(), complete);
  EXPECT_TRUE(dst.Partial().empty());
  EXPECT_TRUE(Exists(root_ + "/b/sha256/README"));
  EXPECT_TRUE(Exists(root_ + "/b/partial/" + std::string(64, 'A')));
}

TEST_F(ArtifactStoreTest, InitMakesPrivateDirectoriesAndClearsTmp) {
  FileArtifactStore store = Store("a");
  for (const char* sub : {"", "/sha256", "/partial", "/tmp"}) {
    struct stat st {};
    ASSERT_EQ(stat((root_ + "/a" + sub).c_str(), &st), 0) << sub;
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << sub;
    EXPECT_EQ(st.st_mode & 077, 0u) << sub;
  }
  WriteFile(root_ + "/a/tmp/add-leftover", Bytes(100, 1));
  FileArtifactStore again = Store("a");
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/a/tmp"));
}

}  // namespace
}  // namespace starling::node
