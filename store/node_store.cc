// NodeStore on RocksDB.
//
// Key layout (one default column family; keys are ASCII):
//   node/name          the node name this data directory belongs to
//   node/generation    how many times the daemon has started here (uint32);
//                      the daemon starts its incarnation at generation << 32
//   members/<name>     the last known address of member <name>
//   node/origin        this data directory's log origin id (uint64 LE), made
//                      once; the log's (origin, seq) identities hang on it
//   log/entry/<origin>/<seq>
//                      a desired-state log entry not yet folded into the
//                      snapshot (origin and seq as 16 hex digits, so keys
//                      sort by origin then seq); payload: a log.capnp Entry
//   log/snapshot       the folded prefix: a log.capnp Snapshot (registers,
//                      per-origin coverage, recent history and documents)
//   lease/promised     the highest lease ballot this node promised as a
//                      voter (uint64 LE); ballots must never go backwards
//   agent/applied      what the node agent runs here (its JSON)
//   node/tags          the tags set at run time (`starling tags`), a JSON
//                      object, so that they outlive a restart
//   node/release       the release that last ran here (data dir format 3)
//
// Value layout, the same for every key:
//   [0]       format version (kFormat = 1)
//   [1]       record kind: 'N' name, 'G' generation, 'M' member address,
//             'O' origin, 'E' log entry, 'S' log snapshot,
//             'B' lease ballot, 'A' applied state, 'T' tags, 'R' release
//   [2..6)    payload length, uint32 little-endian
//   [6..6+n)  payload: name / address bytes, or the generation as uint32 LE
//   [6+n..)   FNV-1a 32 of every byte before it, uint32 little-endian
// The kind byte stops a value written under one key from being accepted
// under another after a bug or a bad restore; the checksum catches torn or
// flipped bytes that RocksDB's own block checksums would not (e.g. a value
// written wrong). It is not a defence against an attacker who can write the
// data directory: the directory's permissions are.
#include "starling/store/node_store.h"

#include "starling/store/log_codec.h"

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string_view>
#include <system_error>

namespace starling::store {
namespace {

constexpr uint8_t kFormat = 1;
constexpr char kKindName = 'N';
constexpr char kKindGeneration = 'G';
constexpr char kKindMember = 'M';
constexpr char kKindOrigin = 'O';
constexpr char kKindBallot = 'B';
constexpr char kKindEntry = 'E';
constexpr char kKindSnapshot = 'S';
constexpr char kKindApplied = 'A';
constexpr char kKindTags = 'T';
constexpr char kKindRelease = 'R';
constexpr std::string_view kReleaseKey = "node/release";
constexpr size_t kHeaderBytes = 6;
constexpr size_t kChecksumBytes = 4;
// Names and addresses are short; anything larger is damage, not data.
constexpr size_t kMaxPayloadBytes = 4096;
constexpr size_t kMaxAppliedBytes = 1u << 20;
constexpr std::string_view kAppliedKey = "agent/applied";
// Tags travel in every alive message: a few hundred bytes in practice.
constexpr size_t kMaxTagsBytes = 64u << 10;
constexpr std::string_view kTagsKey = "node/tags";
// Log records carry documents.
constexpr size_t kMaxLogPayloadBytes = 256u << 20;

constexpr std::string_view kNameKey = "node/name";
constexpr std::string_view kGenerationKey = "node/generation";
constexpr std::string_view kMembersPrefix = "members/";
constexpr std::string_view kOriginKey = "node/origin";
constexpr std::string_view kBallotKey = "lease/promised";
constexpr std::string_view kEntryPrefix = "log/entry/";
constexpr std::string_view kSnapshotKey = "log/snapshot";

std::string EntryKey(const EntryId& id) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 "/%016" PRIx64, id.origin, id.seq);
  return std::string(kEntryPrefix) + buf;
}

ByteView AsBytes(std::string_view s) { return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }
std::string_view AsText(const Bytes& b) { return std::string_view(reinterpret_cast<const char*>(b.data()), b.size()); }

uint32_t Fnv1a32(std::string_view bytes) {
  uint32_t h = 2166136261u;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(std::string_view in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}

std::string Encode(char kind, std::string_view payload) {
  std::string out;
  out.reserve(kHeaderBytes + payload.size() + kChecksumBytes);
  out.push_back(static_cast<char>(kFormat));
  out.push_back(kind);
  PutU32(out, static_cast<uint32_t>(payload.size()));
  out.append(payload);
  PutU32(out, Fnv1a32(out));
  return out;
}

// Returns the payload of a value read under `key`, or kCorruption saying why.
Result<std::string> Decode(std::string_view key, char kind, std::string_view value) {
  auto corrupt = [&](std::string_view why) {
    return Status::Corruption("store value for key '" + std::string(key) +
                              "' is corrupt: " + std::string(why));
  };
  if (value.size() < kHeaderBytes + kChecksumBytes) return corrupt("too short");
  if (static_cast<uint8_t>(value[0]) != kFormat) {
    return corrupt("unknown format version " + std::to_string(static_cast<uint8_t>(value[0])));
  }
  if (value[1] != kind) return corrupt("wrong record kind");
  uint32_t length = GetU32(value.substr(2));
  const size_t max = (kind == kKindEntry || kind == kKindSnapshot) ? kMaxLogPayloadBytes
                     : kind == kKindApplied                       ? kMaxAppliedBytes
                     : kind == kKindTags                          ? kMaxTagsBytes
                                                                  : kMaxPayloadBytes;
  if (length > max || value.size() != kHeaderBytes + length + kChecksumBytes) {
    return corrupt("length does not match");
  }
  std::string_view covered = value.substr(0, kHeaderBytes + length);
  if (GetU32(value.substr(kHeaderBytes + length)) != Fnv1a32(covered)) return corrupt("checksum mismatch");
  return std::string(value.substr(kHeaderBytes, length));
}

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  if (s.IsCorruption()) return Status::Corruption(what + ": " + s.ToString());
  return Status::IoError(what + ": " + s.ToString());
}

}  // namespace

class RocksLogStorage final : public LogStorage {
 public:
  RocksLogStorage(rocksdb::DB& db, const std::string& dir) : db_(db), dir_(dir) {}

  Status AppendEntries(const std::vector<Entry>& entries, bool sync) override {
    rocksdb::WriteBatch batch;
    for (const auto& e : entries) batch.Put(EntryKey(e.id()), Encode(kKindEntry, AsText(EncodeEntry(e))));
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    return FromRocks(db_.Write(wo, &batch), "writing log entries in " + dir_);
  }

  Status ReplaceSnapshot(const Snapshot& snapshot, const std::vector<EntryId>& drop) override {
    rocksdb::WriteBatch batch;
    batch.Put(std::string(kSnapshotKey), Encode(kKindSnapshot, AsText(EncodeSnapshot(snapshot))));
    for (const auto& id : drop) batch.Delete(EntryKey(id));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return FromRocks(db_.Write(wo, &batch), "writing the log snapshot in " + dir_);
  }

  Result<Loaded> Load() override {
    Loaded out;
    std::string value;
    rocksdb::Status s = db_.Get(rocksdb::ReadOptions(), std::string(kSnapshotKey), &value);
    if (s.ok()) {
      auto payload = Decode(kSnapshotKey, kKindSnapshot, value);
      if (!payload.ok()) return payload.status();
      auto snap = DecodeSnapshot(AsBytes(*payload));
      if (!snap.ok()) return Status::Corruption("log snapshot in " + dir_ + ": " + snap.status().message());
      out.snapshot = std::move(*snap);
    } else if (!s.IsNotFound()) {
      return FromRocks(s, "reading the log snapshot in " + dir_);
    }
    std::unique_ptr<rocksdb::Iterator> it(db_.NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(std::string(kEntryPrefix)); it->Valid() && it->key().starts_with(kEntryPrefix); it->Next()) {
      std::string key = it->key().ToString();
      auto payload = Decode(key, kKindEntry, it->value().ToStringView());
      if (!payload.ok()) return payload.status();
      auto e = DecodeEntry(AsBytes(*payload));
      if (!e.ok()) return Status::Corruption("log entry '" + key + "' in " + dir_ + ": " + e.status().message());
      if (EntryKey(e->id()) != key) return Status::Corruption("log entry '" + key + "' holds another entry's id");
      out.entries.push_back(std::move(*e));
    }
    if (!it->status().ok()) return FromRocks(it->status(), "scanning log entries in " + dir_);
    return out;
  }

 private:
  rocksdb::DB& db_;
  const std::string& dir_;
};

struct NodeStore::Rep {
  std::string dir;
  std::unique_ptr<rocksdb::DB> db;
  std::mutex mu;  // makes BumpGeneration's read-modify-write atomic
  std::unique_ptr<RocksLogStorage> log;
};

NodeStore::NodeStore(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
NodeStore::~NodeStore() = default;

const std::string& NodeStore::dir() const { return rep_->dir; }

Result<std::unique_ptr<NodeStore>> NodeStore::Open(const std::string& dir) {
  if (dir.empty()) return Status::InvalidArgument("data dir must not be empty");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError("cannot create data dir " + dir + ": " + ec.message());
  if (!std::filesystem::is_directory(dir, ec)) {
    return Status::IoError("data dir " + dir + " is not a directory");
  }

  rocksdb::Options options;
  // A handful of small keys: keep memory and background work minimal.
  options.OptimizeForSmallDb();
  options.create_if_missing = true;
  options.max_open_files = 16;
  options.keep_log_file_num = 2;
  options.max_log_file_size = 1 << 20;
  options.info_log_level = rocksdb::WARN_LEVEL;

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) {
    // RocksDB's message already carries the file and errno text (e.g. the
    // LOCK file held by another daemon).
    return Status::IoError("cannot open store in data dir " + dir + ": " + s.ToString());
  }
  auto rep = std::make_unique<Rep>();
  rep->dir = dir;
  rep->db.reset(raw);
  rep->log = std::make_unique<RocksLogStorage>(*rep->db, rep->dir);
  return std::unique_ptr<NodeStore>(new NodeStore(std::move(rep)));
}

Result<std::optional<std::string>> NodeStore::LoadName() {
  std::lock_guard lock(rep_->mu);
  std::string value;
  rocksdb::Status s = rep_->db->Get(rocksdb::ReadOptions(), std::string(kNameKey), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "reading " + std::string(kNameKey) + " in " + rep_->dir);
  Result<std::string> name = Decode(kNameKey, kKindName, value);
  if (!name.ok()) return name.status();
  if (name->empty()) return Status::Corruption("store value for key 'node/name' is corrupt: empty name");
  return std::optional<std::string>(std::move(name).value());
}

Status NodeStore::SaveName(const std::string& name) {
  if (name.empty() || name.size() > kMaxPayloadBytes) {
    return Status::InvalidArgument("node name must be 1.." + std::to_string(kMaxPayloadBytes) + " bytes");
  }
  std::lock_guard lock(rep_->mu);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(rep_->db->Put(wo, std::string(kNameKey), Encode(kKindName, name)),
                   "writing " + std::string(kNameKey) + " in " + rep_->dir);
}

Result<uint32_t> NodeStore::LoadGeneration() {
  std::string value;
  rocksdb::Status s = rep_->db->Get(rocksdb::ReadOptions(), std::string(kGenerationKey), &value);
  if (s.IsNotFound()) return uint32_t{0};
  if (!s.ok()) return FromRocks(s, "reading " + std::string(kGenerationKey) + " in " + rep_->dir);
  Result<std::string> payload = Decode(kGenerationKey, kKindGeneration, value);
  if (!payload.ok()) return payload.status();
  if (payload->size() != 4) return Status::Corruption("store value for key 'node/generation' is corrupt: not 4 bytes");
  return GetU32(*payload);
}

Result<uint32_t> NodeStore::BumpGeneration(uint32_t past) {
  std::lock_guard lock(rep_->mu);
  Result<uint32_t> stored = LoadGeneration();
  if (!stored.ok()) return stored.status();
  uint32_t generation = std::max(*stored, past);
  if (generation == UINT32_MAX) {
    return Status::Internal("generation counter in " + rep_->dir + " is exhausted");
  }
  ++generation;
  std::string payload;
  PutU32(payload, generation);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  Status put = FromRocks(rep_->db->Put(wo, std::string(kGenerationKey), Encode(kKindGeneration, payload)),
                         "writing " + std::string(kGenerationKey) + " in " + rep_->dir);
  if (!put.ok()) return put;
  return generation;
}

Status NodeStore::SaveMembers(const std::vector<KnownMember>& members) {
  for (const KnownMember& m : members) {
    if (m.name.empty() || m.name.size() > kMaxPayloadBytes || m.addr.size() > kMaxPayloadBytes) {
      return Status::InvalidArgument("known member '" + m.name +
                                     "' has an empty or oversized name or address");
    }
  }
  std::lock_guard lock(rep_->mu);
  rocksdb::WriteBatch batch;
  // Replace, not merge: members forgotten since the last save must go too.
  std::unique_ptr<rocksdb::Iterator> it(rep_->db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(kMembersPrefix)); it->Valid() && it->key().starts_with(kMembersPrefix);
       it->Next()) {
    batch.Delete(it->key());
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scanning members in " + rep_->dir);
  for (const KnownMember& m : members) {
    batch.Put(std::string(kMembersPrefix) + m.name, Encode(kKindMember, m.addr));
  }
  return FromRocks(rep_->db->Write(rocksdb::WriteOptions(), &batch), "writing members in " + rep_->dir);
}

Result<std::vector<KnownMember>> NodeStore::LoadMembers() {
  std::lock_guard lock(rep_->mu);
  std::vector<KnownMember> out;
  std::unique_ptr<rocksdb::Iterator> it(rep_->db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(kMembersPrefix)); it->Valid() && it->key().starts_with(kMembersPrefix);
       it->Next()) {
    std::string key = it->key().ToString();
    std::string name = key.substr(kMembersPrefix.size());
    if (name.empty()) return Status::Corruption("store key '" + key + "' has an empty member name");
    Result<std::string> addr = Decode(key, kKindMember, it->value().ToStringView());
    if (!addr.ok()) return addr.status();
    out.push_back(KnownMember{std::move(name), std::move(addr).value()});
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scanning members in " + rep_->dir);
  return out;
}

LogStorage& NodeStore::log_storage() { return *rep_->log; }

// A uint64 under `key`; nullopt when absent.
Result<std::optional<uint64_t>> NodeStore::LoadU64(std::string_view key, char kind) {
  std::string value;
  rocksdb::Status s = rep_->db->Get(rocksdb::ReadOptions(), std::string(key), &value);
  if (s.IsNotFound()) return std::optional<uint64_t>();
  if (!s.ok()) return FromRocks(s, "reading " + std::string(key) + " in " + rep_->dir);
  Result<std::string> payload = Decode(key, kind, value);
  if (!payload.ok()) return payload.status();
  if (payload->size() != 8)
    return Status::Corruption("store value for key '" + std::string(key) + "' is corrupt: not 8 bytes");
  return std::optional<uint64_t>(GetU32(*payload) | (uint64_t{GetU32(payload->substr(4))} << 32));
}

// Synced: both callers promise durability before they answer anyone.
Status NodeStore::SaveU64(std::string_view key, char kind, uint64_t v) {
  std::string payload;
  PutU32(payload, static_cast<uint32_t>(v));
  PutU32(payload, static_cast<uint32_t>(v >> 32));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(rep_->db->Put(wo, std::string(key), Encode(kind, payload)),
                   "writing " + std::string(key) + " in " + rep_->dir);
}

Result<uint64_t> NodeStore::LoadOrCreateOrigin(uint64_t fresh) {
  std::lock_guard lock(rep_->mu);
  auto stored = LoadU64(kOriginKey, kKindOrigin);
  if (!stored.ok()) return stored.status();
  if (*stored) {
    if (**stored == 0) return Status::Corruption("store value for key 'node/origin' is corrupt: zero");
    return **stored;
  }
  if (fresh == 0) return Status::InvalidArgument("a new origin id must not be 0");
  if (Status s = SaveU64(kOriginKey, kKindOrigin, fresh); !s.ok()) return s;
  return fresh;
}

Result<uint64_t> NodeStore::LoadBallot() {
  std::lock_guard lock(rep_->mu);
  auto stored = LoadU64(kBallotKey, kKindBallot);
  if (!stored.ok()) return stored.status();
  return stored->value_or(0);
}

Status NodeStore::SaveBallot(uint64_t ballot) {
  std::lock_guard lock(rep_->mu);
  return SaveU64(kBallotKey, kKindBallot, ballot);
}

Result<std::optional<std::string>> NodeStore::LoadText(std::string_view key, char kind) {
  std::lock_guard lock(rep_->mu);
  std::string value;
  rocksdb::Status s = rep_->db->Get(rocksdb::ReadOptions(), std::string(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "reading " + std::string(key) + " in " + rep_->dir);
  Result<std::string> payload = Decode(key, kind, value);
  if (!payload.ok()) return payload.status();
  return std::optional<std::string>(std::move(payload).value());
}

Status NodeStore::SaveText(std::string_view key, char kind, size_t max, const std::string& text) {
  if (text.size() > max)
    return Status::InvalidArgument(std::string(key) + " of " + std::to_string(text.size()) +
                                   " bytes is over the limit of " + std::to_string(max));
  std::lock_guard lock(rep_->mu);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(rep_->db->Put(wo, std::string(key), Encode(kind, text)),
                   "writing " + std::string(key) + " in " + rep_->dir);
}

Result<std::optional<std::string>> NodeStore::LoadApplied() { return LoadText(kAppliedKey, kKindApplied); }

Status NodeStore::SaveApplied(const std::string& json) {
  return SaveText(kAppliedKey, kKindApplied, kMaxAppliedBytes, json);
}

Result<std::optional<std::string>> NodeStore::LoadTags() { return LoadText(kTagsKey, kKindTags); }

Status NodeStore::SaveTags(const std::string& json) { return SaveText(kTagsKey, kKindTags, kMaxTagsBytes, json); }

Result<std::optional<std::string>> NodeStore::LoadRelease() { return LoadText(kReleaseKey, kKindRelease); }

Status NodeStore::SaveRelease(const std::string& release) {
  return SaveText(kReleaseKey, kKindRelease, kMaxPayloadBytes, release);
}

Status NodeStore::DeleteRelease() {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(rep_->db->Delete(wo, std::string(kReleaseKey)), "deleting node/release in " + rep_->dir);
}

Status NodeStore::Checkpoint(const std::string& path) {
  rocksdb::Checkpoint* raw = nullptr;
  if (Status s = FromRocks(rocksdb::Checkpoint::Create(rep_->db.get(), &raw), "checkpoint of " + rep_->dir); !s.ok())
    return s;
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // log_size_for_flush 0: flush the memtable, so the copy is whole in its files.
  return FromRocks(checkpoint->CreateCheckpoint(path, 0), "checkpoint of " + rep_->dir + " to " + path);
}

}  // namespace starling::store
