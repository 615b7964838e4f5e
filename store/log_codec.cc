#include "starling/store/log_codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "schema/log.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/text.h"

namespace starling::store {
namespace {

namespace lw = ::starling::logwire;

struct Invalid {
  std::string what;
};

// Whole log messages (a sync batch or a snapshot) stay well under this.
constexpr size_t kMaxMessageBytes = 64u << 20;
constexpr size_t kMaxListItems = 1u << 20;

using capnp_bytes::Str;
Bytes ToBytes(capnp::MessageBuilder& mb) { return capnp_bytes::Flat(mb); }

void Require(const Status& s) {
  if (!s.ok()) throw Invalid{s.message()};
}

void WriteHlc(lw::Hlc::Builder b, const Hlc& h) {
  b.setWall(h.wall);
  b.setLogical(h.logical);
}
Hlc ReadHlc(lw::Hlc::Reader r) { return Hlc{r.getWall(), r.getLogical()}; }

void WriteEntry(lw::Entry::Builder b, const Entry& e) {
  b.setOrigin(e.origin);
  b.setOriginName(e.origin_name);
  b.setSeq(e.seq);
  WriteHlc(b.initHlc(), e.hlc);
  WriteHlc(b.initBase(), e.base);
  b.setNote(e.note);
  auto ops = b.initOps(e.ops.size());
  for (size_t i = 0; i < e.ops.size(); ++i) {
    ops[i].setKey(e.ops[i].key);
    if (e.ops[i].value) {
      ops[i].setValue(*e.ops[i].value);
    } else {
      ops[i].setDelete(true);
    }
    ops[i].setRank(e.ops[i].rank);
  }
}

Entry ReadEntry(lw::Entry::Reader r) {
  Entry e;
  e.origin = r.getOrigin();
  e.origin_name = Str(r.getOriginName());
  e.seq = r.getSeq();
  e.hlc = ReadHlc(r.getHlc());
  e.base = ReadHlc(r.getBase());
  e.note = Str(r.getNote());
  auto ops = r.getOps();
  if (ops.size() > kMaxOpsPerEntry) throw Invalid{"too many ops in an entry"};
  e.ops.reserve(ops.size());
  for (auto op : ops) {
    Op o{Str(op.getKey()), std::nullopt};
    if (!op.getDelete()) o.value = Str(op.getValue());
    o.rank = op.getRank();
    e.ops.push_back(std::move(o));
  }
  Require(CheckEntry(e));
  return e;
}

void WriteHighWater(capnp::List<lw::HighWater>::Builder b, const HighWater& hw) {
  unsigned i = 0;
  for (const auto& [origin, seq] : hw) {
    b[i].setOrigin(origin);
    b[i].setSeq(seq);
    ++i;
  }
}

HighWater ReadHighWater(capnp::List<lw::HighWater>::Reader r) {
  if (r.size() > kMaxListItems) throw Invalid{"too many high-water marks"};
  HighWater hw;
  for (auto h : r) {
    if (h.getOrigin() == 0) throw Invalid{"high-water mark for origin 0"};
    hw[h.getOrigin()] = h.getSeq();
  }
  return hw;
}

void WriteEntries(capnp::List<lw::Entry>::Builder b, const std::vector<Entry>& entries) {
  for (size_t i = 0; i < entries.size(); ++i) WriteEntry(b[i], entries[i]);
}

std::vector<Entry> ReadEntries(capnp::List<lw::Entry>::Reader r) {
  if (r.size() > kMaxListItems) throw Invalid{"too many entries"};
  std::vector<Entry> out;
  out.reserve(r.size());
  for (auto e : r) out.push_back(ReadEntry(e));
  return out;
}

void WriteRevision(lw::Revision::Builder b, const Revision& v) {
  b.setId(v.id);
  WriteHlc(b.initHlc(), v.hlc);
  b.setDigest(v.digest);
  b.setOrigin(v.origin);
  b.setOriginName(v.origin_name);
  b.setSeq(v.seq);
  b.setNote(v.note);
  b.setConflict(v.conflict);
  b.setChanged(v.changed);
}

Revision ReadRevision(lw::Revision::Reader r) {
  Revision v;
  v.id = Str(r.getId());
  v.hlc = ReadHlc(r.getHlc());
  v.digest = Str(r.getDigest());
  v.origin = r.getOrigin();
  v.origin_name = Str(r.getOriginName());
  v.seq = r.getSeq();
  v.note = Str(r.getNote());
  v.conflict = Str(r.getConflict());
  v.changed = r.getChanged();
  if (v.id.size() > 64 || v.digest.size() > 64 || v.origin_name.size() > kMaxKeyBytes ||
      v.note.size() > kMaxNoteBytes || v.conflict.size() > kMaxNoteBytes)
    throw Invalid{"oversized revision record"};
  return v;
}

void WriteSnapshot(lw::Snapshot::Builder b, const Snapshot& s) {
  WriteHighWater(b.initCovered(s.covered.size()), s.covered);
  auto regs = b.initRegisters(s.registers.size());
  unsigned i = 0;
  for (const auto& [key, r] : s.registers) {
    auto o = regs[i++];
    o.setKey(key);
    if (r.value) {
      o.setValue(*r.value);
    } else {
      o.setDeleted(true);
    }
    WriteHlc(o.initHlc(), r.stamp.hlc);
    o.setOrigin(r.stamp.origin);
    o.setSeq(r.stamp.seq);
    o.setRank(r.rank);
  }
  auto hist = b.initHistory(s.history.size());
  for (size_t j = 0; j < s.history.size(); ++j) WriteRevision(hist[j], s.history[j]);
  b.setEntries(s.entries);
  auto docs = b.initDocuments(s.documents.size());
  i = 0;
  for (const auto& [digest, json] : s.documents) {
    docs[i].setDigest(digest);
    docs[i].setJson(json);
    ++i;
  }
}

Snapshot ReadSnapshot(lw::Snapshot::Reader r) {
  Snapshot s;
  s.covered = ReadHighWater(r.getCovered());
  auto regs = r.getRegisters();
  if (regs.size() > kMaxListItems) throw Invalid{"too many registers"};
  for (auto o : regs) {
    std::string key = Str(o.getKey());
    if (key.empty() || key.size() > kMaxKeyBytes) throw Invalid{"bad register key"};
    Register reg;
    if (!o.getDeleted()) reg.value = Str(o.getValue());
    reg.stamp = Stamp{ReadHlc(o.getHlc()), o.getOrigin(), o.getSeq()};
    reg.rank = o.getRank();
    s.registers[key] = std::move(reg);
  }
  auto hist = r.getHistory();
  if (hist.size() > kMaxListItems) throw Invalid{"too many revisions"};
  for (auto h : hist) s.history.push_back(ReadRevision(h));
  s.entries = r.getEntries();
  auto docs = r.getDocuments();
  if (docs.size() > kMaxListItems) throw Invalid{"too many documents"};
  for (auto d : docs) s.documents[Str(d.getDigest())] = Str(d.getJson());
  Require(CheckSnapshot(s));
  return s;
}

// The shared guarded reader, plus the readers' own limit checks (Invalid).
template <typename T, typename Fn>
Result<T> Guarded(ByteView bytes, Fn fn) {
  return capnp_bytes::DecodeGuarded<T>(bytes, kMaxMessageBytes, "log message",
                                       [&](capnp::FlatArrayMessageReader& reader) -> Result<T> {
                                         try {
                                           return fn(reader);
                                         } catch (const Invalid& e) {
                                           return Status::Corruption(e.what);
                                         } catch (const std::bad_alloc&) {
                                           return Status::Corruption("log message too large to hold");
                                         }
                                       });
}

}  // namespace

Bytes EncodeEntry(const Entry& e) {
  capnp::MallocMessageBuilder mb;
  WriteEntry(mb.initRoot<lw::Entry>(), e);
  return ToBytes(mb);
}

Result<Entry> DecodeEntry(ByteView bytes) {
  return Guarded<Entry>(bytes, [](capnp::FlatArrayMessageReader& r) { return ReadEntry(r.getRoot<lw::Entry>()); });
}

Bytes EncodeSnapshot(const Snapshot& s) {
  capnp::MallocMessageBuilder mb;
  WriteSnapshot(mb.initRoot<lw::Snapshot>(), s);
  return ToBytes(mb);
}

Result<Snapshot> DecodeSnapshot(ByteView bytes) {
  return Guarded<Snapshot>(bytes,
                           [](capnp::FlatArrayMessageReader& r) { return ReadSnapshot(r.getRoot<lw::Snapshot>()); });
}

Bytes EncodeLogMessage(const LogMessage& m) {
  capnp::MallocMessageBuilder mb;
  auto root = mb.initRoot<lw::LogMessage>();
  root.setVersion(kLogVersionMax);
  if (auto* e = std::get_if<Entry>(&m)) {
    WriteEntry(root.initEntry(), *e);
  } else if (auto* a = std::get_if<Announce>(&m)) {
    auto b = root.initAnnounce();
    b.setOrigin(a->id.origin);
    b.setSeq(a->id.seq);
    b.setHolder(a->holder);
  } else if (auto* q = std::get_if<SyncRequest>(&m)) {
    auto b = root.initSyncRequest();
    b.setFrom(q->from);
    WriteHighWater(b.initHave(q->have.size()), q->have);
    WriteEntries(b.initPush(q->push.size()), q->push);
  } else {
    const auto& p = std::get<SyncReply>(m);
    auto b = root.initSyncReply();
    WriteHighWater(b.initHave(p.have.size()), p.have);
    WriteEntries(b.initEntries(p.entries.size()), p.entries);
    if (p.snapshot) {
      b.setHasSnapshot(true);
      WriteSnapshot(b.initSnapshot(), *p.snapshot);
    }
    b.setMore(p.more);
  }
  return ToBytes(mb);
}

Result<LogMessage> DecodeLogMessage(ByteView bytes) {
  return Guarded<LogMessage>(bytes, [](capnp::FlatArrayMessageReader& r) -> LogMessage {
    auto root = r.getRoot<lw::LogMessage>();
    if (root.getVersion() < kLogVersionMin || root.getVersion() > kLogVersionMax)
      throw Invalid{"log protocol version " + std::to_string(root.getVersion()) + " outside [" +
                    std::to_string(kLogVersionMin) + ", " + std::to_string(kLogVersionMax) + "]"};
    switch (root.which()) {
      case lw::LogMessage::ENTRY: return ReadEntry(root.getEntry());
      case lw::LogMessage::ANNOUNCE: {
        auto a = root.getAnnounce();
        Announce out{{a.getOrigin(), a.getSeq()}, Str(a.getHolder())};
        if (out.id.origin == 0 || out.id.seq == 0 || out.holder.empty() || out.holder.size() > 262 ||
            !text::IsCleanName(out.holder))
          throw Invalid{"malformed announce"};
        return out;
      }
      case lw::LogMessage::SYNC_REQUEST: {
        auto q = root.getSyncRequest();
        SyncRequest out{Str(q.getFrom()), ReadHighWater(q.getHave()), ReadEntries(q.getPush())};
        if (out.from.size() > kMaxKeyBytes || !text::IsCleanName(out.from)) throw Invalid{"bad sender name"};
        return out;
      }
      case lw::LogMessage::SYNC_REPLY: {
        auto p = root.getSyncReply();
        SyncReply out{ReadHighWater(p.getHave()), ReadEntries(p.getEntries()), std::nullopt, p.getMore()};
        if (p.getHasSnapshot()) out.snapshot = ReadSnapshot(p.getSnapshot());
        return out;
      }
    }
    throw Invalid{"unknown log message"};
  });
}

size_t EstimateEntryBytes(const Entry& e) {
  size_t n = 160 + e.origin_name.size() + e.note.size();
  for (const auto& op : e.ops) n += 56 + op.key.size() + (op.value ? op.value->size() : 0);
  return n;
}

}  // namespace starling::store
