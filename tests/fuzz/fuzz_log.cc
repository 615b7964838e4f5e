// Desired-state log bytes: entries and snapshots as read back from the data
// directory, and the replication messages (announce, sync request/reply) a
// peer sends. The same input goes to all three decoders; what decodes then
// goes where the daemon puts it (a DesiredLog), because a decoded value is
// only half-checked until the log has validated it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "fuzz_check.h"
#include "starling/store/log.h"
#include "starling/store/log_codec.h"

namespace store = starling::store;

namespace {

// A fixed "now" in microseconds (2027-01-15): ingest depends on the wall
// clock, and a crash must replay. The seeds are stamped before it.
constexpr int64_t kNow = 1'800'000'000'000'000;

std::string Hex(const starling::Bytes& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < b.size() && i < 64; ++i) s += {d[b[i] >> 4], d[b[i] & 15]};
  return s;
}

// What decodes must encode to bytes that decode back to the same value.
template <typename T, typename Decode, typename Encode>
void CheckRoundTrip(const T& value, Decode decode, Encode encode) {
  starling::Bytes encoded = encode(value);
  auto again = decode(starling::ByteView(encoded));
  FUZZ_CHECK(again.ok(), again.status().ToString());
  FUZZ_CHECK(encode(*again) == encoded, "a second round trip changed " + Hex(encoded));
}

// Feeds a fresh log what a peer sent, then reopens it from its storage as a
// restart would: the state must survive the restart unchanged.
void Ingest(const std::vector<store::Entry>& entries, const store::Snapshot* snapshot) {
  store::MemoryLogStorage storage;
  auto log = store::DesiredLog::Open(storage, 1000, "fuzz");
  FUZZ_CHECK(log.ok(), log.status().ToString());
  if (snapshot) (void)(*log)->InstallSnapshot(*snapshot);
  for (const auto& e : entries) (void)(*log)->Ingest(e, kNow);
  const std::string digest = (*log)->digest();
  const std::string current = (*log)->Current().id;
  (void)(*log)->state().Document();
  (void)(*log)->History();

  auto reopened = store::DesiredLog::Open(storage, 1000, "fuzz");
  FUZZ_CHECK(reopened.ok(), "restart failed: " + reopened.status().ToString());
  FUZZ_CHECK((*reopened)->digest() == digest, "digest changed across a restart: before " +
                                                   (*log)->state().Document().dump() + ", after " +
                                                   (*reopened)->state().Document().dump());
  FUZZ_CHECK((*reopened)->Current().id == current, "current revision changed across a restart");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const starling::ByteView bytes(data, size);

  if (auto entry = store::DecodeEntry(bytes); entry.ok()) {
    FUZZ_CHECK(store::CheckEntry(*entry).ok(), "decoded an entry CheckEntry refuses");
    CheckRoundTrip(*entry, store::DecodeEntry, store::EncodeEntry);
    auto again = store::DecodeEntry(store::EncodeEntry(*entry));
    FUZZ_CHECK(again.ok() && *again == *entry, "entry changed in a round trip");
    Ingest({*entry}, nullptr);
  }

  if (auto snapshot = store::DecodeSnapshot(bytes); snapshot.ok()) {
    CheckRoundTrip(*snapshot, store::DecodeSnapshot, store::EncodeSnapshot);
    Ingest({}, &*snapshot);
  }

  if (auto message = store::DecodeLogMessage(bytes); message.ok()) {
    CheckRoundTrip(*message, store::DecodeLogMessage, store::EncodeLogMessage);
    if (auto* e = std::get_if<store::Entry>(&*message)) {
      Ingest({*e}, nullptr);
    } else if (auto* q = std::get_if<store::SyncRequest>(&*message)) {
      Ingest(q->push, nullptr);
    } else if (auto* p = std::get_if<store::SyncReply>(&*message)) {
      Ingest(p->entries, p->snapshot ? &*p->snapshot : nullptr);
    }
  }
  return 0;
}
