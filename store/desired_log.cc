#include <sodium.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>

#include "starling/atom.h"
#include "starling/store/log.h"
#include "starling/store/log_codec.h"
#include "starling/text.h"

namespace starling::store {

// ---- Hlc ---------------------------------------------------------------------

std::string Hlc::ToString() const {
  std::time_t secs = static_cast<std::time_t>(wall / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06" PRId64 "Z", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int64_t>(wall % 1000000));
  std::string out = buf;
  if (logical) out += "+" + std::to_string(logical);
  return out;
}

namespace {

std::string Hex(const unsigned char* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

std::string Sha256Hex(std::string_view text) {
  unsigned char out[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(out, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  return Hex(out, sizeof out);
}

std::string_view SectionOf(std::string_view key) { return key.substr(0, key.find('/')); }

std::string OriginLabel(const std::map<uint64_t, std::string>& names, uint64_t origin) {
  auto it = names.find(origin);
  if (it != names.end() && !it->second.empty()) return it->second;
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, origin);
  return buf;
}

}  // namespace

// ---- State -------------------------------------------------------------------

State::State(const State& o) : bytes_(o.bytes_), digest_(o.digest_), document_(o.document_) {
  o.ForEach([&](const Atom& key, const Register& r) { registers_.emplace_hint(registers_.end(), key, r); });
}

State& State::operator=(const State& o) {
  if (this != &o) {
    State copy(o);
    base_ = nullptr;
    registers_ = std::move(copy.registers_);
    bytes_ = copy.bytes_;
    digest_ = std::move(copy.digest_);
    document_ = std::move(copy.document_);
  }
  return *this;
}

bool State::Put(const std::string& key, Register r) {
  const Register* held_now = Find(key);
  if (held_now && !Older(*held_now, r)) return false;
  auto held = [&](const Register& reg) { return reg.value ? key.size() + reg.value->size() : 0; };
  if (held_now) bytes_ -= held(*held_now);
  bytes_ += held(r);
  if (auto it = registers_.find(key); it != registers_.end()) {
    it->second = std::move(r);
  } else {
    registers_.emplace(Atom(key), std::move(r));
  }
  // Control records are no part of the document: a rollout's progress does
  // not make every node parse and hash the document again.
  if (!IsControlKey(key)) {
    digest_.reset();
    document_.reset();
  }
  return true;
}

bool State::Apply(const Entry& e) {
  bool changed = false;
  for (const auto& op : e.ops) changed |= Put(op.key, Register{op.value, StampOf(e), op.rank});
  return changed;
}

const Register* State::Find(const std::string& key) const {
  if (auto it = registers_.find(key); it != registers_.end()) return &it->second;
  if (!base_) return nullptr;
  auto it = base_->find(key);
  return it == base_->end() ? nullptr : &it->second;
}

void State::ForEach(const std::function<void(const Atom&, const Register&)>& fn, std::string_view prefix) const {
  auto in = [&](const Atom& key) { return key.str().starts_with(prefix); };
  auto own = prefix.empty() ? registers_.begin() : registers_.lower_bound(prefix);
  if (!base_) {
    for (; own != registers_.end() && in(own->first); ++own) fn(own->first, own->second);
    return;
  }
  auto low = prefix.empty() ? base_->begin() : base_->lower_bound(prefix);
  // A merge of the two in key order; where both hold a key, this state's
  // register is the newer.
  while (true) {
    const bool own_left = own != registers_.end() && in(own->first);
    const bool low_left = low != base_->end() && in(low->first);
    if (!own_left && !low_left) return;
    if (!low_left || (own_left && own->first.str() <= low->first.str())) {
      if (low_left && own->first == low->first) ++low;
      fn(own->first, own->second);
      ++own;
    } else {
      fn(low->first, low->second);
      ++low;
    }
  }
}

void State::Rebase(const Registers* base, bool changed) {
  base_ = base;
  if (base_)
    for (auto it = registers_.begin(); it != registers_.end();) {
      auto b = base_->find(it->first);
      it = b != base_->end() && !Older(b->second, it->second) ? registers_.erase(it) : std::next(it);
    }
  if (!changed) return;
  bytes_ = 0;
  ForEach([&](const Atom& key, const Register& r) { bytes_ += r.value ? key.size() + r.value->size() : 0; });
  digest_.reset();
  document_.reset();
}

std::string State::CanonicalText() const {
  // Built from the registers' canonical values directly (no re-parse): the
  // same text as CanonicalJson(Document()), with keys in byte order.
  std::map<std::string_view, std::vector<std::pair<std::string_view, const std::string*>>> sections;
  ForEach([&](const Atom& key, const Register& r) {
    if (!r.value || IsControlKey(key)) return;
    std::string_view k = key;
    auto slash = k.find('/');
    if (slash == std::string_view::npos) {
      sections[k];  // a whole-section object: no items
      sections[k].emplace_back(std::string_view(), &r.value->str());
    } else {
      sections[k.substr(0, slash)].emplace_back(k.substr(slash + 1), &r.value->str());
    }
  });
  std::string out = "{";
  bool first = true;
  for (const auto& [section, items] : sections) {
    if (!first) out += ',';
    first = false;
    out += Json(std::string(section)).dump();
    out += ':';
    if (items.size() == 1 && items[0].first.empty()) {
      out += *items[0].second;
      continue;
    }
    out += '{';
    bool first_item = true;
    for (const auto& [item, value] : items) {
      if (item.empty()) continue;  // a malformed mix of whole and itemised keys: items win
      if (!first_item) out += ',';
      first_item = false;
      out += Json(std::string(item)).dump();
      out += ':';
      out += *value;
    }
    out += '}';
  }
  out += '}';
  return out;
}

namespace {

// Parsed documents by digest, for as long as some State holds them.
intern::SharedCache<std::string, Json>& Documents() {
  static auto* docs = new intern::SharedCache<std::string, Json>;
  return *docs;
}

}  // namespace

const Json& State::Document() const {
  if (!document_) {
    document_ = Documents().Get(Digest(), [this] {
      Json doc = Json::parse(CanonicalText(), nullptr, false);
      return std::make_shared<const Json>(doc.is_discarded() ? Json::object() : std::move(doc));
    });
  }
  return *document_;
}

const std::string& State::Digest() const {
  if (!digest_) digest_ = Sha256Hex(CanonicalText());
  return *digest_;
}

std::string RevisionId(const Hlc& hlc, const std::string& digest) {
  std::string text = digest + "@" + std::to_string(hlc.wall) + "." + std::to_string(hlc.logical);
  return Sha256Hex(text).substr(0, 12);
}

std::vector<Op> OpsBetween(const Json& from, const Json& to) {
  auto a = SplitObjects(from);
  auto b = SplitObjects(to);
  std::vector<Op> ops;
  for (const auto& [key, value] : b) {
    auto it = a.find(key);
    if (it == a.end() || it->second != value) ops.push_back(Op{key, CanonicalJson(value)});
  }
  for (const auto& [key, _] : a)
    if (!b.count(key)) ops.push_back(Op{key, std::nullopt});
  return ops;
}

// One object of the desired state (a key and its value, or its removal).
Status CheckObject(const std::string& key, const std::optional<std::string>& value) {
  if (key.empty() || key.size() > kMaxKeyBytes || !text::IsCleanName(key))
    return Status::Corruption("a bad object key");
  if (SectionOf(key).size() == key.size() && key.find('/') != std::string::npos)
    return Status::Corruption("a bad object key");
  if (value && value->size() > kMaxValueBytes)
    return Status::Corruption("the value for " + key + " of " + std::to_string(value->size()) + " bytes (one object " +
                              "may hold at most " + std::to_string(kMaxValueBytes) + ")");
  // Values are spliced into the canonical document text as they are; the
  // JSON parser also refuses strings that are not UTF-8, but it stops at a
  // NUL, so text after one would be spliced in unchecked.
  if (value && (!text::IsCleanText(*value) || !Json::accept(*value)))
    return Status::Corruption("the value for " + key + " is not JSON");
  return Status::Ok();
}

Status CheckEntry(const Entry& e) {
  if (e.origin == 0) return Status::Corruption("entry without an origin");
  if (e.seq == 0) return Status::Corruption("entry with sequence number 0");
  if (e.origin_name.size() > kMaxKeyBytes || !text::IsCleanName(e.origin_name))
    return Status::Corruption("entry with a bad origin name");
  if (e.note.size() > kMaxNoteBytes || !text::IsCleanText(e.note)) return Status::Corruption("entry with a bad note");
  if (e.ops.empty()) return Status::Corruption("entry without changes");
  if (e.ops.size() > kMaxOpsPerEntry)
    return Status::Corruption("entry with " + std::to_string(e.ops.size()) + " changed objects (at most " +
                              std::to_string(kMaxOpsPerEntry) + " in one entry)");
  size_t bytes = e.note.size();
  for (const auto& op : e.ops) {
    if (Status s = CheckObject(op.key, op.value); !s.ok()) return Status::Corruption("entry with " + s.message());
    bytes += op.key.size() + (op.value ? op.value->size() : 0);
  }
  if (bytes > kMaxEntryBytes)
    return Status::Corruption("entry of " + std::to_string(bytes) + " bytes of objects (at most " +
                              std::to_string(kMaxEntryBytes) + " in one entry)");
  return Status::Ok();
}

// The keys and values the state would hold with `e` applied on top.
Status CheckStateAfter(const State& state, const Entry& e) {
  size_t total = state.bytes();
  const size_t before = total;
  std::map<std::string_view, size_t> after;  // the last op on a key wins
  for (const auto& op : e.ops) after[op.key] = op.value ? op.key.size() + op.value->size() : 0;
  for (const auto& [key, bytes] : after) {
    if (const Register* r = state.Find(std::string(key)); r != nullptr && r->value) total -= key.size() + r->value->size();
    total += bytes;
  }
  if (total > kMaxStateBytes && total > before)
    return Status::InvalidArgument("the change is refused: the desired state would hold " + std::to_string(total) +
                                   " bytes of objects, more than the " + std::to_string(kMaxStateBytes) +
                                   " a node replicates; remove or shrink objects first");
  return Status::Ok();
}

Status CheckSnapshot(const Snapshot& s) {
  for (const auto& [key, reg] : s.registers) {
    if (Status st = CheckObject(key, reg.value); !st.ok()) return Status::Corruption("snapshot with " + st.message());
  }
  for (const auto& row : s.history) {
    if (!text::IsCleanName(row.id) || !text::IsCleanName(row.digest) || !text::IsCleanName(row.origin_name) ||
        !text::IsCleanText(row.note) || !text::IsCleanText(row.conflict))
      return Status::Corruption("snapshot with a history row that is not clean UTF-8");
  }
  for (const auto& [digest, doc] : s.documents) {
    if (!text::IsCleanName(digest) || !text::IsCleanText(doc) || !Json::accept(doc))
      return Status::Corruption("snapshot with a history document that is not JSON");
  }
  return Status::Ok();
}

// ---- SnapshotRegisters ------------------------------------------------------

namespace {

// Every shared register map, by a hash of its content, for as long as some
// snapshot holds it. Keys and values are interned, so a register hashes and
// compares by their identities.
class RegisterPool {
 public:
  static RegisterPool& Get() {
    static auto* pool = new RegisterPool;  // never destroyed: snapshots may outlive static destruction
    return *pool;
  }

  std::shared_ptr<Registers> Share(std::shared_ptr<Registers> map) {
    const size_t h = HashOf(*map);
    std::lock_guard lock(mu_);
    auto [lo, hi] = maps_.equal_range(h);
    for (auto it = lo; it != hi; ++it)
      if (auto held = it->second.lock(); held && *held == *map) return held;
    maps_.emplace(h, map);
    if (maps_.size() >= sweep_at_) {
      std::erase_if(maps_, [](const auto& kv) { return kv.second.expired(); });
      sweep_at_ = std::max<size_t>(64, maps_.size() * 2);
    }
    return map;
  }

 private:
  static size_t HashOf(const Registers& m) {
    size_t h = m.size();
    auto mix = [&h](size_t v) { h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2); };
    for (const auto& [key, r] : m) {
      mix(std::hash<const void*>{}(key.identity()));
      mix(std::hash<const void*>{}(r.value ? r.value->identity() : nullptr));
      mix(static_cast<size_t>(r.stamp.hlc.wall) ^ (static_cast<size_t>(r.stamp.hlc.logical) << 1));
      mix(static_cast<size_t>(r.stamp.origin ^ r.stamp.seq ^ (r.rank << 7)));
    }
    return h;
  }

  std::mutex mu_;
  std::unordered_multimap<size_t, std::weak_ptr<Registers>> maps_;
  size_t sweep_at_ = 64;
};

const std::shared_ptr<Registers>& EmptyRegisters() {
  static auto* empty = new std::shared_ptr<Registers>(std::make_shared<Registers>());
  return *empty;
}

}  // namespace

SnapshotRegisters::SnapshotRegisters() : map_(EmptyRegisters()) {}

Registers& SnapshotRegisters::Edit() {
  if (shared_ || map_.use_count() > 1) {
    map_ = std::make_shared<Registers>(*map_);
    shared_ = false;
  }
  return *map_;
}

void SnapshotRegisters::Share() {
  if (shared_) return;
  map_ = map_->empty() ? EmptyRegisters() : RegisterPool::Get().Share(std::move(map_));
  shared_ = true;
}

// ---- MemoryLogStorage ----------------------------------------------------------

Status MemoryLogStorage::AppendEntries(const std::vector<Entry>& entries, bool) {
  for (const auto& e : entries) {
    Bytes b = EncodeEntry(e);
    entries_[e.id()] = Atom(std::string(b.begin(), b.end()));
  }
  return Status::Ok();
}

Status MemoryLogStorage::ReplaceSnapshot(const Snapshot& snapshot, const std::vector<EntryId>& drop) {
  Bytes b = EncodeSnapshot(snapshot);
  snapshot_ = Atom(std::string(b.begin(), b.end()));
  for (const auto& id : drop) entries_.erase(id);
  return Status::Ok();
}

size_t MemoryLogStorage::bytes() const {
  size_t n = snapshot_.size();
  for (const auto& [_, e] : entries_) n += e.size();
  return n;
}

void MemoryLogStorage::ForEachValue(const std::function<void(const void*, size_t)>& fn) const {
  if (!snapshot_.empty()) fn(snapshot_.identity(), snapshot_.size());
  for (const auto& [_, e] : entries_) fn(e.identity(), e.size());
}

Result<LogStorage::Loaded> MemoryLogStorage::Load() {
  Loaded out;
  if (!snapshot_.empty()) {
    auto s = DecodeSnapshot(ByteView(reinterpret_cast<const uint8_t*>(snapshot_.data()), snapshot_.size()));
    if (!s.ok()) return s.status();
    out.snapshot = std::move(*s);
  }
  for (const auto& [id, bytes] : entries_) {
    auto e = DecodeEntry(ByteView(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    if (!e.ok()) return e.status();
    out.entries.push_back(std::move(*e));
  }
  return out;
}

// ---- DesiredLog --------------------------------------------------------------------

namespace {

// The history as of some prefix of entries in stamp order, and the state
// it ends in, so that an entry stamped after all others (the usual case: a
// fresh change) extends it without replaying everything.
// The state a replay steps through is its own only while it replays: once
// it has caught up, it equals the log's state (the same entries, folded by
// the same order), and the log's state steps it on from there, so a node
// does not hold the desired state twice.
struct Replayer {
  std::vector<Revision> rows;
  std::string prev_digest, prev_id;
  std::map<EntryId, size_t> row_of;
  std::optional<Stamp> last;
  // The canonical document after each changed line, by digest, once a
  // DocumentAt has asked: kept and extended with the rows, so that looking
  // up older revisions (every rollout step does) does not replay the log.
  // Interned: every node keeps the same ones.
  std::optional<std::map<std::string, Atom>> texts;

  // Applies `e` to `st`, which holds every line before it.
  void Step(State& st, const Entry& e, const std::map<uint64_t, std::string>& names,
            std::map<std::string, Atom>* texts) {
    Revision row{"", e.hlc, "", e.origin, e.origin_name, e.seq, e.note, "", false};
    for (const auto& op : e.ops) {
      const Register* r = st.Find(op.key);
      if (!r) continue;
      if (Older(Register{op.value, StampOf(e), op.rank}, *r)) {
        if (row.conflict.empty())
          row.conflict = std::string(r->stamp < StampOf(e) ? "lost to higher-ranked change " : "lost to newer change ") +
                         OriginLabel(names, r->stamp.origin) + "#" + std::to_string(r->stamp.seq) + " on " + op.key;
      } else if (r->stamp.origin != e.origin && e.base < r->stamp.hlc) {
        // The writer of `e` had not seen `r`'s change and overwrote it.
        auto it = row_of.find(EntryId{r->stamp.origin, r->stamp.seq});
        if (it != row_of.end() && rows[it->second].conflict.empty())
          rows[it->second].conflict = "overwritten by concurrent change " + OriginLabel(names, e.origin) + "#" +
                                      std::to_string(e.seq) + " on " + op.key;
      }
    }
    st.Apply(e);
    row.digest = st.Digest();
    row.changed = row.digest != prev_digest;
    row.id = row.changed ? RevisionId(e.hlc, row.digest) : prev_id;
    if (texts && row.changed) (*texts)[row.digest] = Atom(st.CanonicalText());
    prev_digest = row.digest;
    prev_id = row.id;
    row_of[e.id()] = rows.size();
    rows.push_back(std::move(row));
    last = StampOf(e);
  }
};

}  // namespace

struct DesiredLog::Rep {
  LogStorage& storage;
  uint64_t origin;
  std::string origin_name;
  LogOptions options;
  HybridClock clock;
  uint64_t next_seq = 1;

  Snapshot snapshot;
  std::map<EntryId, Entry> retained;
  HighWater high;  // contiguous per origin
  State state;
  std::map<uint64_t, std::string> names;

  mutable std::optional<Replayer> history;

  Rep(LogStorage& s, uint64_t o, std::string n, LogOptions opt)
      : storage(s), origin(o), origin_name(std::move(n)), options(opt) {
    // The state stands on the snapshot's registers; replacing the snapshot
    // (a fold, a peer's merged) rebases it.
    state.Rebase(&snapshot.registers.get(), false);
  }
  Rep(const Rep&) = delete;
  Rep& operator=(const Rep&) = delete;

  bool Holds(const EntryId& id) const {
    auto c = snapshot.covered.find(id.origin);
    if (c != snapshot.covered.end() && id.seq <= c->second) return true;
    return retained.count(id) != 0;
  }

  void Advance(uint64_t o) {
    uint64_t& h = high[o];
    auto c = snapshot.covered.find(o);
    if (c != snapshot.covered.end()) h = std::max(h, c->second);
    while (retained.count(EntryId{o, h + 1})) ++h;
  }

  void Add(Entry e) {
    if (!e.origin_name.empty()) names[e.origin] = e.origin_name;
    if (e.origin == origin) next_seq = std::max(next_seq, e.seq + 1);
    clock.Observe(e.hlc);
    if (history && (!history->last || *history->last < StampOf(e))) {
      history->Step(state, e, names, history->texts ? &*history->texts : nullptr);
    } else {
      state.Apply(e);
      history.reset();
    }
    const uint64_t o = e.origin;
    retained.emplace(e.id(), std::move(e));
    Advance(o);
  }

  std::vector<Entry> Sorted() const {
    std::vector<Entry> out;
    out.reserve(retained.size());
    for (const auto& [_, e] : retained) out.push_back(e);
    std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return StampOf(a) < StampOf(b); });
    return out;
  }

  // Replays the retained entries over the snapshot in stamp order. With
  // `texts`, also collects the canonical document after each line.
  Replayer Replay(std::map<std::string, Atom>* texts) const {
    Replayer r;
    r.rows = snapshot.history;
    State st;
    for (const auto& [key, reg] : snapshot.registers) st.Put(key, reg);
    r.prev_digest = st.Digest();
    r.prev_id = r.rows.empty() ? "" : r.rows.back().id;
    for (const Entry& e : Sorted()) r.Step(st, e, names, texts);
    return r;
  }

  const std::vector<Revision>& History() const {
    if (!history) history = Replay(nullptr);
    return history->rows;
  }

  uint64_t CoveredCount() const {
    uint64_t n = 0;
    for (const auto& [_, s] : snapshot.covered) n += s;
    return n;
  }

  void TrimHistory(Snapshot& s) const {
    if (s.history.size() > options.history_keep)
      s.history.erase(s.history.begin(), s.history.end() - static_cast<std::ptrdiff_t>(options.history_keep));
    KeepNewestDocuments(s, kMaxSnapshotDocumentBytes);
  }

  // Keeps the documents of the newest revisions whose texts fit `budget`.
  static void KeepNewestDocuments(Snapshot& s, size_t budget) {
    std::set<std::string> keep;
    size_t bytes = 0;
    for (auto r = s.history.rbegin(); r != s.history.rend(); ++r) {
      if (keep.count(r->digest)) continue;
      auto d = s.documents.find(r->digest);
      if (d == s.documents.end()) continue;
      if (bytes + d->second.size() > budget) break;
      bytes += d->second.size();
      keep.insert(r->digest);
    }
    for (auto it = s.documents.begin(); it != s.documents.end();)
      it = keep.count(it->first) ? std::next(it) : s.documents.erase(it);
  }
};

DesiredLog::DesiredLog(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
DesiredLog::~DesiredLog() = default;

Result<std::unique_ptr<DesiredLog>> DesiredLog::Open(LogStorage& storage, uint64_t origin, std::string origin_name,
                                                     LogOptions options) {
  if (sodium_init() < 0) return Status::Internal("libsodium failed to initialise");
  if (origin == 0) return Status::InvalidArgument("log origin id must not be 0");
  auto rep = std::make_unique<Rep>(storage, origin, std::move(origin_name), options);
  auto loaded = storage.Load();
  if (!loaded.ok()) return Status::Corruption("desired-state log: " + loaded.status().message());
  rep->snapshot = std::move(loaded->snapshot);
  rep->snapshot.registers.Share();
  rep->state.Rebase(&rep->snapshot.registers.get(), true);
  for (const auto& [key, r] : rep->snapshot.registers) rep->clock.Observe(r.stamp.hlc);
  for (const auto& row : rep->snapshot.history) {
    if (!row.origin_name.empty()) rep->names[row.origin] = row.origin_name;
    rep->clock.Observe(row.hlc);
  }
  for (const auto& [o, s] : rep->snapshot.covered) {
    if (o == rep->origin) rep->next_seq = std::max(rep->next_seq, s + 1);
    rep->high[o] = s;
  }
  for (auto& e : loaded->entries) {
    if (rep->Holds(e.id())) continue;
    rep->Add(std::move(e));
  }
  return std::unique_ptr<DesiredLog>(new DesiredLog(std::move(rep)));
}

uint64_t DesiredLog::origin() const { return rep_->origin; }
const std::string& DesiredLog::origin_name() const { return rep_->origin_name; }

Result<Entry> DesiredLog::Write(std::vector<Op> ops, std::string note, Hlc base, int64_t wall_micros) {
  Entry e;
  e.origin = rep_->origin;
  e.origin_name = rep_->origin_name;
  e.seq = rep_->next_seq;
  e.base = base;
  e.note = std::move(note);
  e.ops = std::move(ops);
  // The writer is held to what its peers accept, and a bit more: a state
  // that its snapshot could not carry is refused here, where it is made.
  if (Status s = CheckEntry(e); !s.ok()) return Status::InvalidArgument("the change is refused: " + s.message());
  if (Status s = CheckStateAfter(rep_->state, e); !s.ok()) return s;
  e.hlc = rep_->clock.Now(wall_micros);
  if (Status s = rep_->storage.AppendEntries({e}, /*sync=*/true); !s.ok()) return s;
  rep_->Add(e);
  return e;
}

Result<bool> DesiredLog::Ingest(const Entry& e, int64_t wall_micros) {
  if (Status s = CheckEntry(e); !s.ok()) return s;
  if (rep_->Holds(e.id())) return false;
  if (e.hlc.wall > wall_micros + kMaxClockSkewMicros)
    return Status::Unavailable("entry " + e.origin_name + "#" + std::to_string(e.seq) + " is stamped " +
                               std::to_string((e.hlc.wall - wall_micros) / 1000000) + " s ahead of our clock");
  if (Status s = rep_->storage.AppendEntries({e}, /*sync=*/false); !s.ok()) return s;
  rep_->Add(e);
  return true;
}

bool DesiredLog::Holds(const EntryId& id) const { return rep_->Holds(id); }

HighWater DesiredLog::high_water() const {
  HighWater out;
  for (const auto& [o, s] : rep_->high)
    if (s > 0) out[o] = s;
  return out;
}

std::vector<Entry> DesiredLog::Missing(const HighWater& peer, size_t max_bytes, bool* more) const {
  std::vector<Entry> out;
  size_t bytes = 0;
  if (more) *more = false;
  for (const auto& [id, e] : rep_->retained) {
    auto p = peer.find(id.origin);
    if (p != peer.end() && id.seq <= p->second) continue;
    size_t n = EstimateEntryBytes(e);
    if (!out.empty() && bytes + n > max_bytes) {
      if (more) *more = true;
      break;
    }
    bytes += n;
    out.push_back(e);
  }
  return out;
}

bool DesiredLog::Behind(const HighWater& peer) const {
  for (const auto& [o, s] : rep_->snapshot.covered) {
    auto p = peer.find(o);
    if (p == peer.end() ? s > 0 : p->second < s) return true;
  }
  return false;
}

const Snapshot& DesiredLog::snapshot() const { return rep_->snapshot; }

Snapshot DesiredLog::SnapshotForPeer() const {
  Snapshot s = rep_->snapshot;
  Rep::KeepNewestDocuments(s, kMaxSentDocumentBytes);
  return s;
}

Status DesiredLog::InstallSnapshot(Snapshot s) {
  if (Status bad = CheckSnapshot(s); !bad.ok()) return bad;
  Rep& r = *rep_;
  Snapshot merged = r.snapshot;
  Registers& regs = merged.registers.Edit();
  for (const auto& [key, reg] : s.registers) {
    auto it = regs.find(key);
    if (it == regs.end() || Older(it->second, reg)) regs[key] = reg;
  }
  for (const auto& [o, seq] : s.covered) merged.covered[o] = std::max(merged.covered[o], seq);
  // Retained entries the peer's snapshot covers are folded in too, so that
  // our snapshot's registers account for everything it claims to cover.
  std::vector<EntryId> drop;
  for (const auto& [id, e] : r.retained) {
    auto c = merged.covered.find(id.origin);
    if (c == merged.covered.end() || id.seq > c->second) continue;
    for (const auto& op : e.ops) {
      Register reg{op.value, StampOf(e), op.rank};
      auto it = regs.find(op.key);
      if (it == regs.end() || Older(it->second, reg)) regs[Atom(op.key)] = reg;
    }
    drop.push_back(id);
  }
  std::map<EntryId, Revision> rows;
  for (const auto* h : {&r.snapshot.history, &s.history})
    for (const auto& row : *h) rows.emplace(EntryId{row.origin, row.seq}, row);
  merged.history.clear();
  for (auto& [_, row] : rows) merged.history.push_back(std::move(row));
  std::sort(merged.history.begin(), merged.history.end(), [](const Revision& a, const Revision& b) {
    return Stamp{a.hlc, a.origin, a.seq} < Stamp{b.hlc, b.origin, b.seq};
  });
  merged.documents.insert(s.documents.begin(), s.documents.end());
  merged.entries = 0;
  for (const auto& [_, seq] : merged.covered) merged.entries += seq;
  r.TrimHistory(merged);
  merged.registers.Share();
  if (Status st = r.storage.ReplaceSnapshot(merged, drop); !st.ok()) return st;

  r.snapshot = std::move(merged);
  for (const auto& id : drop) r.retained.erase(id);
  // The merged snapshot holds ours: the state stays above both.
  r.state.Rebase(&r.snapshot.registers.get(), true);
  for (const auto& [key, reg] : r.snapshot.registers) r.clock.Observe(reg.stamp.hlc);
  for (const auto& row : r.snapshot.history)
    if (!row.origin_name.empty()) r.names.emplace(row.origin, row.origin_name);
  for (const auto& [o, seq] : r.snapshot.covered) {
    if (o == r.origin) r.next_seq = std::max(r.next_seq, seq + 1);
    r.Advance(o);
  }
  r.history.reset();
  return Status::Ok();
}

Result<size_t> DesiredLog::Compact(const HighWater& acked) {
  Rep& r = *rep_;
  Snapshot next = r.snapshot;
  std::vector<EntryId> drop;
  for (const auto& [o, a] : acked) {
    auto h = r.high.find(o);
    if (h == r.high.end()) continue;
    uint64_t cut = std::min(a, h->second);
    if (cut > next.covered[o]) next.covered[o] = cut;
  }
  for (auto it = next.covered.begin(); it != next.covered.end();)
    it = it->second == 0 ? next.covered.erase(it) : std::next(it);
  for (const auto& [id, e] : r.retained) {
    auto c = next.covered.find(id.origin);
    if (c != next.covered.end() && id.seq <= c->second) drop.push_back(id);
  }
  if (drop.empty()) return size_t{0};

  std::map<std::string, Atom> texts;
  std::vector<Revision> rows = r.Replay(&texts).rows;
  std::set<EntryId> dropped(drop.begin(), drop.end());
  next.history.clear();
  for (auto& row : rows) {
    bool frozen_before = row.origin == 0 ? true : !r.retained.count(EntryId{row.origin, row.seq});
    if (frozen_before || dropped.count(EntryId{row.origin, row.seq})) next.history.push_back(row);
  }
  for (const auto& row : next.history) {
    auto t = texts.find(row.digest);
    if (t != texts.end()) next.documents[row.digest] = t->second;
  }
  Registers& regs = next.registers.Edit();
  for (const auto& id : drop) {
    for (const auto& op : r.retained.at(id).ops) {
      Register reg{op.value, StampOf(r.retained.at(id)), op.rank};
      auto it = regs.find(op.key);
      if (it == regs.end() || Older(it->second, reg)) regs[Atom(op.key)] = reg;
    }
  }
  next.registers.Share();
  next.entries = 0;
  for (const auto& [_, seq] : next.covered) next.entries += seq;
  r.TrimHistory(next);
  if (Status s = r.storage.ReplaceSnapshot(next, drop); !s.ok()) return s;
  r.snapshot = std::move(next);
  for (const auto& id : drop) r.retained.erase(id);
  r.state.Rebase(&r.snapshot.registers.get(), false);  // the state held the folded entries already
  r.history.reset();
  return drop.size();
}

DesiredLog::Foldable DesiredLog::StampedBefore(int64_t wall_micros) const {
  const Rep& r = *rep_;
  Foldable out;
  uint64_t origin = 0, next = 0;
  bool first = true, open = false;
  // Retained entries are ordered by origin, then seq, and an origin's stamps
  // rise with its seq: the prefix ends at its first gap or young entry.
  for (const auto& [id, e] : r.retained) {
    if (first || id.origin != origin) {
      first = false;
      origin = id.origin;
      auto c = r.snapshot.covered.find(origin);
      next = (c == r.snapshot.covered.end() ? 0 : c->second) + 1;
      open = true;
    }
    if (!open) continue;
    if (id.seq != next || e.hlc.wall >= wall_micros) {
      open = false;
      continue;
    }
    out.cut[origin] = id.seq;
    ++out.entries;
    out.bytes += EstimateEntryBytes(e);
    ++next;
  }
  return out;
}

size_t DesiredLog::SnapshotBytes() const {
  const Snapshot& s = rep_->snapshot;
  size_t n = s.covered.size() * 16;
  for (const auto& [key, reg] : s.registers) n += key.size() + (reg.value ? reg.value->size() : 0) + 40;
  for (const auto& row : s.history) n += row.id.size() + row.digest.size() + row.origin_name.size() + row.note.size() +
                                         row.conflict.size() + 40;
  for (const auto& [digest, text] : s.documents) n += digest.size() + text.size();
  return n;
}

const State& DesiredLog::state() const { return rep_->state; }
const std::string& DesiredLog::digest() const { return rep_->state.Digest(); }
uint64_t DesiredLog::entries() const { return rep_->CoveredCount() + rep_->retained.size(); }
size_t DesiredLog::retained() const { return rep_->retained.size(); }
Hlc DesiredLog::last_hlc() const { return rep_->clock.last(); }
const std::vector<Revision>& DesiredLog::History() const { return rep_->History(); }

Revision DesiredLog::Current() const {
  const auto& h = History();
  for (auto it = h.rbegin(); it != h.rend(); ++it)
    if (it->changed || !it->id.empty()) {
      Revision cur = *it;
      cur.digest = digest();
      return cur;
    }
  Revision empty;
  empty.digest = digest();
  return empty;
}

Result<Revision> DesiredLog::Find(std::string_view id) const {
  if (id.size() < 4) return Status::InvalidArgument("revision '" + std::string(id) + "' is too short (at least 4 hex digits)");
  const Revision* found = nullptr;
  for (const auto& row : History()) {
    if (!row.changed || row.id.compare(0, id.size(), id) != 0) continue;
    if (found && found->id != row.id)
      return Status::InvalidArgument("revision '" + std::string(id) + "' is ambiguous (" + found->id + ", " + row.id +
                                     ", ...): give more digits");
    found = &row;
  }
  if (!found) return Status::NotFound("no revision '" + std::string(id) + "' in history");
  return *found;
}

Result<Json> DesiredLog::DocumentAt(std::string_view id) const {
  auto rev = Find(id);
  if (!rev.ok()) return rev.status();
  if (rev->digest == digest()) return state().Document();
  auto d = rep_->snapshot.documents.find(rev->digest);
  if (d != rep_->snapshot.documents.end()) {
    Json doc = Json::parse(d->second, nullptr, false);
    if (!doc.is_discarded()) return doc;
  }
  auto& history = rep_->history;
  if (!history || !history->texts) {
    // The rows stay where they are: History() hands out a reference to them.
    std::map<std::string, Atom> texts;
    Replayer fresh = rep_->Replay(&texts);
    if (!history) history = std::move(fresh);
    history->texts = std::move(texts);
  }
  auto t = history->texts->find(rev->digest);
  if (t == history->texts->end())
    return Status::NotFound("the content of revision " + rev->id + " is no longer kept (compacted away)");
  Json doc = Json::parse(t->second.str(), nullptr, false);
  if (doc.is_discarded()) return Status::Corruption("stored document of revision " + rev->id + " is not JSON");
  return doc;
}

std::vector<Entry> DesiredLog::RetainedEntries() const { return rep_->Sorted(); }

}  // namespace starling::store
