// NodeStore: the facts a node must remember across restarts.
//
// Contract
//  * One NodeStore per data directory; RocksDB's lock file makes a second
//    process opening the same directory fail with kIoError.
//  * Every method is thread-safe (calls are serialized internally) and
//    blocking: callers on a latency-sensitive thread should hand writes to a
//    worker.
//  * Stored values are untrusted on read: one that fails validation gives
//    kCorruption naming its key, never a crash and never a silently reset
//    value (a reset generation would let the incarnation go backwards).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "starling/status.h"
#include "starling/store/log.h"

namespace starling::store {

// A member this node knew of, enough to reach it again after a restart.
struct KnownMember {
  std::string name;
  std::string addr;  // "host:port"
  bool operator==(const KnownMember&) const = default;
};

class NodeStore {
 public:
  // Opens (creating when missing) the store in `dir`, creating `dir` itself
  // too. kIoError names the path and the OS or RocksDB reason.
  static Result<std::unique_ptr<NodeStore>> Open(const std::string& dir);

  ~NodeStore();
  NodeStore(const NodeStore&) = delete;
  NodeStore& operator=(const NodeStore&) = delete;

  const std::string& dir() const;

  // The node name this data directory belongs to; nullopt for a new one.
  Result<std::optional<std::string>> LoadName();
  Status SaveName(const std::string& name);

  // Increments the persisted generation and returns the new value (1 on the
  // first call). Durable (fsync'ed) before it returns, so a crash right after
  // can never hand out the same generation twice.
  // `past`: a generation handed out elsewhere (a copy this one replaced),
  // which the new one must exceed too.
  Result<uint32_t> BumpGeneration(uint32_t past = 0);
  // The last generation handed out (0: none).
  Result<uint32_t> LoadGeneration();

  // Replaces the whole known-member set atomically. Not fsync'ed: losing the
  // last moments of membership news in a crash costs nothing but a staler
  // rejoin list.
  Status SaveMembers(const std::vector<KnownMember>& members);
  // Sorted by name.
  Result<std::vector<KnownMember>> LoadMembers();

  // This data directory's desired-state log origin id; `fresh` (non-zero,
  // random) becomes it the first time. Durable before it returns.
  Result<uint64_t> LoadOrCreateOrigin(uint64_t fresh);
  // The desired-state log's records in this data directory: appends are
  // synced when asked, snapshot replacement always.
  LogStorage& log_storage();

  // The highest lease ballot promised here (0 when none); Save is synced.
  Result<uint64_t> LoadBallot();
  Status SaveBallot(uint64_t ballot);

  // What the node agent runs here (its own JSON); Save is synced.
  Result<std::optional<std::string>> LoadApplied();
  Status SaveApplied(const std::string& json);

  // The tags set at run time (a JSON object); nullopt when never set. Save is synced.
  Result<std::optional<std::string>> LoadTags();
  Status SaveTags(const std::string& json);

  // The release that last ran on this data dir (data dir format 3); nullopt
  // when none recorded it. Save is synced.
  Result<std::optional<std::string>> LoadRelease();
  Status SaveRelease(const std::string& release);
  Status DeleteRelease();

  // A consistent copy of the store at `path` (which must not exist):
  // RocksDB's checkpoint, hard links where it can. Flushes first, so the
  // copy needs no write-ahead log of its own.
  Status Checkpoint(const std::string& path);

 private:
  Result<std::optional<uint64_t>> LoadU64(std::string_view key, char kind);
  Status SaveU64(std::string_view key, char kind, uint64_t v);
  Result<std::optional<std::string>> LoadText(std::string_view key, char kind);
  Status SaveText(std::string_view key, char kind, size_t max, const std::string& text);
  struct Rep;
  explicit NodeStore(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

}  // namespace starling::store
