// NodeStore on a real RocksDB directory, including values damaged behind
// its back.
#include "starling/store/node_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <filesystem>
#include <fstream>

#include "local_cluster.h"

namespace starling::store {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<NodeStore> MustOpen(const std::string& dir) {
  Result<std::unique_ptr<NodeStore>> s = NodeStore::Open(dir);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

// Writes a raw value under `key`, bypassing NodeStore's encoding.
void PutRaw(const std::string& dir, const std::string& key, const std::string& value) {
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir, &db).ok());
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  delete db;
}

std::string GetRaw(const std::string& dir, const std::string& key) {
  rocksdb::DB* db = nullptr;
  EXPECT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir, &db).ok());
  std::string value;
  EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), key, &value).ok());
  delete db;
  return value;
}

class NodeStoreTest : public ::testing::Test {
 protected:
  itest::TempDir tmp_;
  std::string dir_ = tmp_.path() + "/data/nested";
};

TEST_F(NodeStoreTest, CreatesTheDirectoryAndStartsEmpty) {
  auto store = MustOpen(dir_);
  ASSERT_TRUE(store);
  EXPECT_TRUE(std::filesystem::is_directory(dir_));
  Result<std::optional<std::string>> name = store->LoadName();
  ASSERT_TRUE(name.ok());
  EXPECT_FALSE(name->has_value());
  Result<std::vector<KnownMember>> members = store->LoadMembers();
  ASSERT_TRUE(members.ok());
  EXPECT_TRUE(members->empty());
}

TEST_F(NodeStoreTest, NameAndGenerationSurviveReopening) {
  {
    auto store = MustOpen(dir_);
    ASSERT_TRUE(store->SaveName("node-a").ok());
    EXPECT_EQ(*store->BumpGeneration(), 1u);
    EXPECT_EQ(*store->BumpGeneration(), 2u);
  }
  auto store = MustOpen(dir_);
  EXPECT_EQ(store->LoadName()->value_or(""), "node-a");
  EXPECT_EQ(*store->BumpGeneration(), 3u);
}

TEST_F(NodeStoreTest, SaveMembersReplacesTheWholeSet) {
  auto store = MustOpen(dir_);
  std::vector<KnownMember> first = {{"b", "10.0.0.2:7946"}, {"a", "10.0.0.1:7946"}, {"c", "[::1]:7946"}};
  ASSERT_TRUE(store->SaveMembers(first).ok());
  std::vector<KnownMember> want = {{"a", "10.0.0.1:7946"}, {"b", "10.0.0.2:7946"}, {"c", "[::1]:7946"}};
  EXPECT_EQ(*store->LoadMembers(), want);

  std::vector<KnownMember> second = {{"c", "10.0.0.3:1"}, {"d", "10.0.0.4:7946"}};
  ASSERT_TRUE(store->SaveMembers(second).ok());
  EXPECT_EQ(*store->LoadMembers(), second);
  ASSERT_TRUE(store->SaveMembers({}).ok());
  EXPECT_TRUE(store->LoadMembers()->empty());
  // Members never clobber the node's own keys.
  ASSERT_TRUE(store->SaveName("self").ok());
  ASSERT_TRUE(store->SaveMembers(second).ok());
  EXPECT_EQ(store->LoadName()->value_or(""), "self");
}

TEST_F(NodeStoreTest, RejectsEmptyNames) {
  auto store = MustOpen(dir_);
  EXPECT_EQ(store->SaveName("").code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store->SaveMembers({{"", "1.2.3.4:5"}}).code(), Status::Code::kInvalidArgument);
}

TEST_F(NodeStoreTest, UnusableDirectoryNamesPathAndReason) {
  std::string file = tmp_.path() + "/file";
  std::ofstream(file) << "x";
  Result<std::unique_ptr<NodeStore>> s = NodeStore::Open(file + "/data");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kIoError);
  EXPECT_THAT(s.status().message(), HasSubstr(file + "/data"));
  EXPECT_THAT(s.status().message(), HasSubstr("Not a directory"));

  Result<std::unique_ptr<NodeStore>> f = NodeStore::Open(file);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr(file));
}

TEST_F(NodeStoreTest, SecondOpenOfTheSameDirectoryFails) {
  auto store = MustOpen(dir_);
  Result<std::unique_ptr<NodeStore>> again = NodeStore::Open(dir_);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.status().message(), HasSubstr(dir_));
}

TEST_F(NodeStoreTest, CorruptValuesAreReportedNotTrusted) {
  {
    auto store = MustOpen(dir_);
    ASSERT_TRUE(store->SaveName("node-a").ok());
    ASSERT_TRUE(store->BumpGeneration().ok());
    ASSERT_TRUE(store->SaveMembers({{"peer", "10.0.0.1:7946"}}).ok());
  }
  // One flipped bit in each value.
  for (const char* key : {"node/name", "node/generation", "members/peer"}) {
    std::string value = GetRaw(dir_, key);
    ASSERT_GT(value.size(), 7u);
    value[6] ^= 0x01;
    PutRaw(dir_, key, value);
  }
  {
    auto store = MustOpen(dir_);
    Result<std::optional<std::string>> name = store->LoadName();
    ASSERT_FALSE(name.ok());
    EXPECT_EQ(name.status().code(), Status::Code::kCorruption);
    EXPECT_THAT(name.status().message(), HasSubstr("node/name"));
    Result<uint32_t> gen = store->BumpGeneration();
    ASSERT_FALSE(gen.ok());
    EXPECT_EQ(gen.status().code(), Status::Code::kCorruption);
    EXPECT_EQ(store->LoadMembers().status().code(), Status::Code::kCorruption);
  }
  // Values of the wrong shape altogether.
  for (const std::string& value : {std::string(), std::string("\x01"), std::string(3, '\xff'),
                                   std::string("\x01G\xff\xff\xff\xff", 6), std::string(4096, 'z')}) {
    PutRaw(dir_, "node/generation", value);
    PutRaw(dir_, "node/name", value);
    auto store = MustOpen(dir_);
    EXPECT_EQ(store->BumpGeneration().status().code(), Status::Code::kCorruption);
    EXPECT_EQ(store->LoadName().status().code(), Status::Code::kCorruption);
  }
  // A name value stored under the generation key has the wrong kind.
  {
    auto store = MustOpen(dir_);
    ASSERT_TRUE(store->SaveName("node-b").ok());
  }
  PutRaw(dir_, "node/generation", GetRaw(dir_, "node/name"));
  EXPECT_EQ(MustOpen(dir_)->BumpGeneration().status().code(), Status::Code::kCorruption);
}

Result<std::unique_ptr<DesiredLog>> OpenLog(NodeStore& store) {
  auto origin = store.LoadOrCreateOrigin(0x1234);
  if (!origin.ok()) return origin.status();
  return DesiredLog::Open(store.log_storage(), *origin, "node-a");
}

TEST_F(NodeStoreTest, DesiredLogSurvivesReopeningWithItsSnapshot) {
  std::string digest;
  const int64_t wall = 1'790'000'000'000'000;
  {
    auto store = MustOpen(dir_);
    EXPECT_EQ(*store->LoadOrCreateOrigin(0x1234), 0x1234u);
    EXPECT_EQ(*store->LoadOrCreateOrigin(0x9999), 0x1234u) << "made once, then kept";
    auto log = OpenLog(*store);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    for (int i = 0; i < 10; ++i)
      ASSERT_TRUE((*log)->Write({Op{"packages/p" + std::to_string(i % 3), "{\"v\":" + std::to_string(i) + "}"}}, "",
                                {}, wall + i)
                      .ok());
    ASSERT_EQ(*(*log)->Compact(HighWater{{0x1234, 6}}), 6u);
    digest = (*log)->digest();
  }
  auto store = MustOpen(dir_);
  auto log = OpenLog(*store);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ((*log)->digest(), digest);
  EXPECT_EQ((*log)->entries(), 10u);
  EXPECT_EQ((*log)->retained(), 4u);
  EXPECT_EQ((*log)->Write({Op{"packages/x", "{}"}}, "", {}, wall)->seq, 11u);
}

TEST_F(NodeStoreTest, CorruptLogRecordsAreReportedNamingTheKey) {
  std::string key;
  {
    auto store = MustOpen(dir_);
    auto log = OpenLog(*store);
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->Write({Op{"packages/web", "{}"}}, "", {}, 1'790'000'000'000'000).ok());
    key = "log/entry/0000000000001234/0000000000000001";
  }
  std::string value = GetRaw(dir_, key);
  ASSERT_GT(value.size(), 10u);
  value[8] ^= 0x40;
  PutRaw(dir_, key, value);
  auto store = MustOpen(dir_);
  auto log = OpenLog(*store);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), Status::Code::kCorruption);
  EXPECT_THAT(log.status().message(), HasSubstr(key));
}

}  // namespace
}  // namespace starling::store
