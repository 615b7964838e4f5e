// The desired-state log: entries, their fold into the desired state, history
// and the pure anti-entropy arithmetic. See store/README.md for the design.
//
// Contract
//  * An entry is one operator change, identified by (origin, seq) and ordered
//    by (hlc, origin, seq). Entries hold puts and deletes of objects
//    ("packages/web", "policy", ...); each object is a last-writer-wins
//    register, so the state is the same whatever order the entries arrive
//    in, and a snapshot (registers) plus later entries equals all entries.
//  * DesiredLog is single-threaded (the owner's protocol thread) and never
//    reads the OS clock: wall time is passed in. Persistence goes through a
//    LogStorage; a local Write is synced before it returns.
//  * Entries and snapshots from peers are untrusted: Ingest and
//    InstallSnapshot check them and return kCorruption naming the problem.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "starling/atom.h"
#include "starling/status.h"
#include "starling/store/document.h"
#include "starling/store/hlc.h"

namespace starling::store {

// One change to one object: a put of its canonical JSON, or a delete.
struct Op {
  std::string key;
  // nullopt = delete. Interned: every node keeps the same retained entries,
  // and the values they carry are the values of its registers.
  std::optional<Atom> value;
  // Orders the op's register before its stamp does: a higher rank wins
  // whatever the stamps. 0 for every object but `voters`, where the lease
  // ranks a set by how many changes led to it (node/core/voters.h), so that
  // a node that chose voters alone does not win a merge by writing last.
  uint64_t rank = 0;
  bool operator==(const Op&) const = default;
};

struct EntryId {
  uint64_t origin = 0;
  uint64_t seq = 0;
  auto operator<=>(const EntryId&) const = default;
};

struct Entry {
  uint64_t origin = 0;      // random id of the writer's data directory
  std::string origin_name;  // the writer's member name
  uint64_t seq = 0;         // 1, 2, ... per origin
  Hlc hlc;
  Hlc base;  // the newest change the writer had seen when it wrote this one
  std::string note;
  std::vector<Op> ops;

  EntryId id() const { return {origin, seq}; }
  bool operator==(const Entry&) const = default;
};

// The total order of entries: (hlc, origin, seq).
struct Stamp {
  Hlc hlc;
  uint64_t origin = 0;
  uint64_t seq = 0;
  auto operator<=>(const Stamp&) const = default;
};
inline Stamp StampOf(const Entry& e) { return {e.hlc, e.origin, e.seq}; }

// Per origin: every entry up to this seq is held.
using HighWater = std::map<uint64_t, uint64_t>;

struct Register {
  // nullopt = deleted (a tombstone). Interned (starling/atom.h): every node
  // holds every object, the desired state naming every node among them.
  std::optional<Atom> value;
  Stamp stamp;
  uint64_t rank = 0;  // the writing op's rank
  bool operator==(const Register&) const = default;
};
// Keyed by interned names: every node holds every object under the same
// keys, `nodes/<name>` for every node among them.
using Registers = std::map<Atom, Register, std::less<>>;
// The register order: rank, then stamp. A total order on what the entries
// carry, so the fold is the same in any arrival order.
inline bool Older(const Register& a, const Register& b) {
  return a.rank != b.rank ? a.rank < b.rank : a.stamp < b.stamp;
}

// A line of history: the state after one entry was folded in.
struct Revision {
  std::string id;  // 12 hex digits; empty for the empty initial state
  Hlc hlc;
  std::string digest;
  uint64_t origin = 0;
  std::string origin_name;
  uint64_t seq = 0;
  std::string note;
  std::string conflict;  // empty, or why this change lost to a concurrent one
  bool changed = false;  // whether the content changed
};

// A snapshot's registers, shared: in the simulator thousands of nodes live
// in one process, and the nodes that folded the same entries hold the same
// registers (the fold cuts at aligned stamps, ReplicatorConfig::fold_align),
// so Share() makes them hold one copy between them. Copy-on-write: a handle
// reads like the map, and the first edit of a shared one copies it.
class SnapshotRegisters {
 public:
  SnapshotRegisters();
  const Registers& get() const { return *map_; }
  auto begin() const { return map_->begin(); }
  auto end() const { return map_->end(); }
  size_t size() const { return map_->size(); }
  bool empty() const { return map_->empty(); }
  auto find(std::string_view key) const { return map_->find(key); }
  // The map to change, this handle's own from now on.
  Registers& Edit();
  Register& operator[](std::string_view key) { return Edit()[Atom(key)]; }
  // Replaces the map by an equal one already shared, or shares this one.
  void Share();
  // Equal handles that are shared hold the same map.
  const void* identity() const { return map_.get(); }
  friend bool operator==(const SnapshotRegisters& a, const SnapshotRegisters& b) {
    return a.map_ == b.map_ || *a.map_ == *b.map_;
  }

 private:
  std::shared_ptr<Registers> map_;
  bool shared_ = true;  // held by the pool (or the empty map): never edited in place
};

struct Snapshot {
  HighWater covered;
  SnapshotRegisters registers;
  std::vector<Revision> history;                 // newest revisions up to the cut
  // digest -> canonical JSON, for `history`; interned (starling/atom.h):
  // every node keeps the same past documents, and every copy of a snapshot
  // shares them.
  std::map<std::string, Atom> documents;
  uint64_t entries = 0;
  bool empty() const { return covered.empty() && registers.empty(); }
};

// Limits on what an entry may make a node hold. The writer checks its own
// entry against the same limits as every peer's decoder (CheckEntry), so a
// write that is accepted can always replicate: an entry of kMaxEntryBytes
// fits a sync message, whose stream cap is 16 MiB.
inline constexpr size_t kMaxKeyBytes = 256;
inline constexpr size_t kMaxValueBytes = 1 << 20;
inline constexpr size_t kMaxOpsPerEntry = 4096;
inline constexpr size_t kMaxNoteBytes = 1024;
inline constexpr size_t kMaxEntryBytes = 8 << 20;  // its keys, values and note together
// A local write is refused when the objects' keys and values would come to
// more than this in all, so that a snapshot of the state crosses too.
inline constexpr size_t kMaxStateBytes = 8 << 20;
// A snapshot keeps the content of past revisions (for `history`, `get
// --revision` and rollbacks) newest first up to this many bytes, so that it
// always decodes again (the decoders take 64 MiB at most); the copy sent to a
// peer keeps up to kMaxSentDocumentBytes of them, so that it crosses the
// 16 MiB stream cap beside a full 8 MiB state. Older content is "no longer
// kept"; the revisions themselves stay in history.
inline constexpr size_t kMaxSnapshotDocumentBytes = 32 << 20;
inline constexpr size_t kMaxSentDocumentBytes = 4 << 20;
// An entry stamped further ahead of our wall clock is refused for now.
inline constexpr int64_t kMaxClockSkewMicros = 5LL * 60 * 1000 * 1000;

// Control records ("~rollout", ...) replicate like any object but are not
// part of the desired-state document: they do not change its digest or
// revision. The rollout engine keeps its progress in them.
inline constexpr char kControlPrefix = '~';
inline bool IsControlKey(std::string_view key) { return !key.empty() && key[0] == kControlPrefix; }

// The materialised desired state: one register per object.
//
// A state can stand on a base, the registers of the log's snapshot: it then
// holds only the registers newer than the base's, so that a node does not
// hold the desired state twice (the snapshot's, and the snapshot with the
// retained entries folded in). A copy holds every register itself.
class State {
 public:
  State() = default;
  State(const State& o);
  State& operator=(const State& o);
  // Last-writer-wins by (rank, stamp). Returns whether the register changed.
  bool Put(const std::string& key, Register r);
  bool Apply(const Entry& e);
  // Every register, in key order; with a prefix, those whose keys start so.
  void ForEach(const std::function<void(const Atom& key, const Register& r)>& fn,
               std::string_view prefix = {}) const;
  // The keys and values of the objects held (tombstones count nothing).
  size_t bytes() const { return bytes_; }
  // Valid until the next Put or Rebase (a fold drops the state's own
  // registers that the snapshot took in).
  const Register* Find(const std::string& key) const;
  // Stands on `base` (which must outlive this, or be rebased away from)
  // from now on. Every register of the base older than this state's stays
  // beneath it; the state's own registers that the base now equals or
  // outranks are dropped. `changed`: whether the base may have changed what
  // the state holds (a peer's snapshot merged) rather than only taken in
  // what it held already (a fold).
  void Rebase(const Registers* base, bool changed);
  // Built once per change and cached, like the digest.
  const Json& Document() const;
  // The canonical JSON text of Document(), built without re-parsing.
  std::string CanonicalText() const;
  // Hex SHA-256 of the canonical JSON of Document(); equal states give
  // equal digests on every node.
  const std::string& Digest() const;

 private:
  const Registers* base_ = nullptr;
  Registers registers_;  // over base_: the registers newer than its
  size_t bytes_ = 0;
  mutable std::optional<std::string> digest_;
  // Shared with every State of the same digest in the process (each
  // simulated node, a node's replays): a document of thousands of nodes
  // is parsed and kept once.
  mutable std::shared_ptr<const Json> document_;
};

// The id of the revision with content `digest` made by the change at `hlc`.
std::string RevisionId(const Hlc& hlc, const std::string& digest);
// The ops that turn document `from` into `to`: puts of the objects that
// differ, deletes of the objects `to` no longer has.
std::vector<Op> OpsBetween(const Json& from, const Json& to);

// Where the log keeps its bytes: RocksDB in the daemon, memory in the
// simulator.
class LogStorage {
 public:
  virtual ~LogStorage() = default;
  virtual Status AppendEntries(const std::vector<Entry>& entries, bool sync) = 0;
  // Atomically stores `snapshot` and drops the entries it now covers.
  virtual Status ReplaceSnapshot(const Snapshot& snapshot, const std::vector<EntryId>& drop) = 0;
  struct Loaded {
    Snapshot snapshot;
    std::vector<Entry> entries;
  };
  virtual Result<Loaded> Load() = 0;
};

// Keeps encoded bytes in memory, so that the simulator exercises the codec
// and a simulated crash keeps what a real one would. The bytes are interned:
// thousands of simulated nodes store the same entries and, mostly, the same
// snapshot, and keep one copy between them.
class MemoryLogStorage final : public LogStorage {
 public:
  Status AppendEntries(const std::vector<Entry>& entries, bool sync) override;
  Status ReplaceSnapshot(const Snapshot& snapshot, const std::vector<EntryId>& drop) override;
  Result<Loaded> Load() override;
  size_t bytes() const;  // what it stores, as a disk of its own would
  // Each stored value once, by identity: values shared between storages
  // have the same identity, so a caller can count the memory they take.
  void ForEachValue(const std::function<void(const void* identity, size_t bytes)>& fn) const;

 private:
  std::map<EntryId, Atom> entries_;
  Atom snapshot_;
};

struct LogOptions {
  size_t history_keep = 1000;  // revisions kept in a snapshot's history
};

class DesiredLog {
 public:
  static Result<std::unique_ptr<DesiredLog>> Open(LogStorage& storage, uint64_t origin, std::string origin_name,
                                                  LogOptions options = {});
  ~DesiredLog();
  DesiredLog(const DesiredLog&) = delete;
  DesiredLog& operator=(const DesiredLog&) = delete;

  uint64_t origin() const;
  const std::string& origin_name() const;

  // A local change, durable (synced) before it returns. `base` is the newest
  // change the writer saw (the current revision's hlc unless told otherwise).
  Result<Entry> Write(std::vector<Op> ops, std::string note, Hlc base, int64_t wall_micros);

  // A peer's entry: true when new, false when already held. kCorruption when
  // it fails validation; kUnavailable when stamped too far in our future
  // (it is taken once our clock catches up).
  Result<bool> Ingest(const Entry& e, int64_t wall_micros);
  bool Holds(const EntryId& id) const;

  HighWater high_water() const;
  // Entries the peer lacks by its high-water marks, oldest first per origin,
  // up to about `max_bytes`; `*more` says some were left out. Entries only
  // in our snapshot are not listed: see Behind().
  std::vector<Entry> Missing(const HighWater& peer, size_t max_bytes, bool* more) const;
  // Whether the peer lacks entries we hold only folded into our snapshot.
  bool Behind(const HighWater& peer) const;
  const Snapshot& snapshot() const;
  // The snapshot as it goes to a peer: past revisions' content cut to
  // kMaxSentDocumentBytes, newest first.
  Snapshot SnapshotForPeer() const;
  // Merges a peer's snapshot: its registers, coverage and history.
  Status InstallSnapshot(Snapshot s);
  // Folds every held entry that `acked` covers into the snapshot. Returns
  // how many were folded.
  Result<size_t> Compact(const HighWater& acked);
  struct Foldable {
    HighWater cut;  // per origin, the last entry of the prefix
    size_t entries = 0;
    size_t bytes = 0;  // as EstimateEntryBytes counts them
  };
  // Each origin's prefix of retained entries stamped before `wall_micros`
  // (what may fold by age, see ReplicatorConfig::fold_after).
  Foldable StampedBefore(int64_t wall_micros) const;
  // About what the snapshot takes to store: its registers, history and
  // documents. Folding rewrites it whole.
  size_t SnapshotBytes() const;

  const State& state() const;
  const std::string& digest() const;
  uint64_t entries() const;  // every entry held, folded or not
  size_t retained() const;   // entries not yet folded into the snapshot
  Hlc last_hlc() const;      // the newest stamp held

  // Computed on demand and cached until the next change.
  const std::vector<Revision>& History() const;
  // The current revision (the last line of history; an empty id for the
  // empty state).
  Revision Current() const;
  // A revision by id or unique id prefix (at least 4 hex digits).
  Result<Revision> Find(std::string_view id) const;
  Result<Json> DocumentAt(std::string_view id) const;

  // For estimates and tests.
  std::vector<Entry> RetainedEntries() const;

 private:
  struct Rep;
  explicit DesiredLog(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

// Check an entry or a snapshot from a peer or disk: sizes, JSON values, and
// names and texts that are clean UTF-8 (starling/text.h). The message names
// the problem.
Status CheckEntry(const Entry& e);
Status CheckSnapshot(const Snapshot& s);

}  // namespace starling::store
