// Log entries, snapshots and replication messages <-> schema/log.capnp bytes.
//
// The trust boundary for the log: Decode* never throws. Bytes that fail Cap'n
// Proto validation, exceed the limits in log.h, or carry a version outside
// our range come back as kCorruption with a short reason. The fuzzers target
// these functions.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "starling/env.h"
#include "starling/store/log.h"

namespace starling::store {

inline constexpr uint16_t kLogVersionMin = 1;
inline constexpr uint16_t kLogVersionMax = 1;

struct Announce {
  EntryId id;
  std::string holder;  // host:port
};
struct SyncRequest {
  std::string from;
  HighWater have;
  std::vector<Entry> push;
};
struct SyncReply {
  HighWater have;
  std::vector<Entry> entries;
  std::optional<Snapshot> snapshot;
  bool more = false;
};
using LogMessage = std::variant<Entry, Announce, SyncRequest, SyncReply>;

Bytes EncodeEntry(const Entry& e);
Result<Entry> DecodeEntry(ByteView bytes);
Bytes EncodeSnapshot(const Snapshot& s);
Result<Snapshot> DecodeSnapshot(ByteView bytes);
Bytes EncodeLogMessage(const LogMessage& m);
Result<LogMessage> DecodeLogMessage(ByteView bytes);
// A conservative estimate of an entry's encoded size.
size_t EstimateEntryBytes(const Entry& e);

}  // namespace starling::store
