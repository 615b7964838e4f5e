// The desired-state log without a network: the fold, the anti-entropy
// arithmetic, compaction, history and the codec's trust boundary.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "starling/store/log.h"
#include "starling/store/log_codec.h"

namespace starling::store {
namespace {

constexpr int64_t kWall = 1'790'000'000'000'000;  // 2026, in microseconds

Op Put(const std::string& key, const std::string& json) { return Op{key, json}; }

std::unique_ptr<DesiredLog> OpenLog(LogStorage& storage, uint64_t origin, const std::string& name) {
  auto log = DesiredLog::Open(storage, origin, name);
  EXPECT_TRUE(log.ok()) << log.status().ToString();
  return std::move(*log);
}

Entry MakeEntry(uint64_t origin, uint64_t seq, int64_t wall, std::vector<Op> ops, Hlc base = {}) {
  Entry e;
  e.origin = origin;
  e.origin_name = "n" + std::to_string(origin);
  e.seq = seq;
  e.hlc = Hlc{wall, 0};
  e.base = base;
  e.ops = std::move(ops);
  return e;
}

TEST(State, FoldIsTheSameInEveryOrder) {
  std::mt19937_64 rng(5);
  std::vector<Entry> entries;
  for (uint64_t i = 1; i <= 60; ++i) {
    const std::string key = "packages/p" + std::to_string(rng() % 7);
    std::vector<Op> ops{rng() % 5 == 0 ? Op{key, std::nullopt} : Put(key, "{\"version\":\"" + std::to_string(i) + "\"}")};
    // Some entries share a wall time: the stamp's origin and seq break ties.
    entries.push_back(MakeEntry(1 + rng() % 3, i, kWall + static_cast<int64_t>(rng() % 20), ops));
  }
  State first;
  for (const auto& e : entries) first.Apply(e);
  for (int round = 0; round < 20; ++round) {
    std::shuffle(entries.begin(), entries.end(), rng);
    State s;
    for (const auto& e : entries) s.Apply(e);
    EXPECT_EQ(s.Digest(), first.Digest());
    EXPECT_EQ(s.CanonicalText(), first.CanonicalText());
  }
  EXPECT_EQ(first.CanonicalText(), CanonicalJson(first.Document()));
}

TEST(State, NewerStampWinsAndDeleteIsATombstone) {
  State s;
  s.Apply(MakeEntry(1, 1, kWall + 10, {Put("packages/web", "{\"version\":\"2\"}")}));
  s.Apply(MakeEntry(2, 1, kWall + 5, {Put("packages/web", "{\"version\":\"1\"}")}));
  EXPECT_EQ(s.Document()["packages"]["web"]["version"], "2");
  s.Apply(MakeEntry(2, 2, kWall + 20, {Op{"packages/web", std::nullopt}}));
  EXPECT_FALSE(s.Document().contains("packages"));
  // An older put arriving after the delete stays dead.
  s.Apply(MakeEntry(3, 1, kWall + 15, {Put("packages/web", "{\"version\":\"9\"}")}));
  EXPECT_FALSE(s.Document().contains("packages"));
}

// A control record is no part of the document: writing one keeps the
// digest, and the document stays the one parsed before.
TEST(State, AControlRecordLeavesTheDocumentAndItsDigest) {
  State s;
  s.Apply(MakeEntry(1, 1, kWall + 10, {Put("packages/web", "{\"version\":\"2\"}")}));
  const std::string digest = s.Digest();
  const Json* doc = &s.Document();
  s.Apply(MakeEntry(1, 2, kWall + 20, {Put("~rollout", "{\"id\":1}")}));
  EXPECT_EQ(s.Digest(), digest);
  EXPECT_EQ(&s.Document(), doc);
  EXPECT_FALSE(s.Document().contains("~rollout"));
  s.Apply(MakeEntry(1, 3, kWall + 30, {Put("packages/web", "{\"version\":\"3\"}")}));
  EXPECT_NE(s.Digest(), digest);
  EXPECT_EQ(s.Document()["packages"]["web"]["version"], "3");
}

// A state over a base (the log's snapshot) reads as the two folded
// together, whatever the base later takes in.
TEST(State, OverABaseItReadsAsBothFoldedAndARebaseKeepsTheNewer) {
  State base_of;
  base_of.Apply(MakeEntry(1, 1, kWall + 10, {Put("packages/a", "{\"v\":\"base\"}"),
                                              Put("packages/c", "{\"v\":\"base\"}")}));
  Registers base;
  base_of.ForEach([&](const Atom& k, const Register& r) { base.emplace(k, r); });

  State s;
  s.Rebase(&base, true);
  EXPECT_FALSE(s.Apply(MakeEntry(2, 1, kWall + 5, {Put("packages/a", "{\"v\":\"older\"}")})))
      << "older than the base's";
  EXPECT_TRUE(s.Apply(MakeEntry(2, 2, kWall + 20, {Put("packages/b", "{\"v\":\"own\"}"),
                                                    Put("packages/c", "{\"v\":\"own\"}")})));
  std::vector<std::string> seen;
  s.ForEach([&](const Atom& k, const Register& r) { seen.push_back(k.str() + "=" + r.value->str()); });
  EXPECT_EQ(seen, (std::vector<std::string>{"packages/a={\"v\":\"base\"}", "packages/b={\"v\":\"own\"}",
                                            "packages/c={\"v\":\"own\"}"}));
  std::vector<std::string> only_b;
  s.ForEach([&](const Atom& k, const Register&) { only_b.push_back(k); }, "packages/b");
  EXPECT_EQ(only_b, std::vector<std::string>{"packages/b"});

  State flat;  // the same entries with no base
  flat.Apply(MakeEntry(1, 1, kWall + 10, {Put("packages/a", "{\"v\":\"base\"}"),
                                           Put("packages/c", "{\"v\":\"base\"}")}));
  flat.Apply(MakeEntry(2, 2, kWall + 20, {Put("packages/b", "{\"v\":\"own\"}"),
                                           Put("packages/c", "{\"v\":\"own\"}")}));
  EXPECT_EQ(s.Digest(), flat.Digest());
  EXPECT_EQ(s.bytes(), flat.bytes());

  // A copy holds every register itself: it outlives the base.
  State copy = s;
  // The base takes in a newer `c` (a peer's snapshot merged) and `b` (a fold).
  base["packages/c"] = Register{Atom("{\"v\":\"peer\"}"), {Hlc{kWall + 30, 0}, 9, 1}, 0};
  base["packages/b"] = *s.Find("packages/b");
  s.Rebase(&base, true);
  EXPECT_EQ(s.Find("packages/c")->value->str(), "{\"v\":\"peer\"}") << "the base's newer register shows";
  EXPECT_EQ(s.Find("packages/b")->value->str(), "{\"v\":\"own\"}");
  EXPECT_NE(s.Digest(), flat.Digest());
  base.clear();
  EXPECT_EQ(copy.Digest(), flat.Digest());
  EXPECT_EQ(copy.Find("packages/a")->value->str(), "{\"v\":\"base\"}");
}

TEST(DesiredLog, WriteIsDurableAndSequenced) {
  MemoryLogStorage storage;
  auto log = OpenLog(storage, 7, "a");
  auto e1 = log->Write({Put("packages/web", "{\"version\":\"1\"}")}, "first", {}, kWall);
  auto e2 = log->Write({Put("packages/db", "{\"version\":\"3\"}")}, "second", e1->hlc, kWall - 1000);
  ASSERT_TRUE(e1.ok() && e2.ok());
  EXPECT_EQ(e1->seq, 1u);
  EXPECT_EQ(e2->seq, 2u);
  EXPECT_LT(e1->hlc, e2->hlc) << "the stamp grows even when the wall clock steps back";
  const std::string digest = log->digest();
  log.reset();
  auto again = OpenLog(storage, 7, "a");
  EXPECT_EQ(again->digest(), digest);
  EXPECT_EQ(again->entries(), 2u);
  auto e3 = again->Write({Put("packages/web", "{\"version\":\"2\"}")}, "", {}, kWall);
  EXPECT_EQ(e3->seq, 3u) << "a reopened log continues its sequence";
  EXPECT_LT(e2->hlc, e3->hlc);
  EXPECT_EQ(again->high_water(), (HighWater{{7, 3}}));
}

TEST(DesiredLog, WriteRefusesEmptyOrBadChanges) {
  MemoryLogStorage storage;
  auto log = OpenLog(storage, 7, "a");
  EXPECT_EQ(log->Write({}, "", {}, kWall).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(log->Write({Put("", "{}")}, "", {}, kWall).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(log->entries(), 0u);
}

// A value of `n` bytes that is JSON (a string).
std::string JsonOfSize(size_t n) { return "\"" + std::string(n - 2, 'x') + "\""; }

// The finding: a write the writer accepted and no peer would take, so the
// cluster stayed on two revisions for good. Now one check serves both sides.
TEST(DesiredLog, AWriteIsHeldToWhatPeersAcceptAndNamesTheLimit) {
  MemoryLogStorage storage;
  auto log = OpenLog(storage, 7, "a");
  // One object over 1 MiB: refused, naming the object and the limit.
  auto big = log->Write({Put("packages/web", JsonOfSize(kMaxValueBytes + 1))}, "", {}, kWall);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(big.status().message().find("packages/web"), std::string::npos) << big.status().message();
  EXPECT_NE(big.status().message().find(std::to_string(kMaxValueBytes)), std::string::npos) << big.status().message();
  // Twelve objects of 900 KiB: each fine, together over one entry's limit.
  std::vector<Op> many;
  for (int i = 0; i < 12; ++i) many.push_back(Put("packages/p" + std::to_string(i), JsonOfSize(900 << 10)));
  auto wide = log->Write(many, "", {}, kWall);
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(wide.status().message().find("at most " + std::to_string(kMaxEntryBytes) + " in one entry"),
            std::string::npos)
      << wide.status().message();
  // What the writer refuses, a peer's decoder refuses too: the same check.
  Entry e = MakeEntry(9, 1, kWall, many);
  EXPECT_EQ(log->Ingest(e, kWall).status().code(), Status::Code::kCorruption);
  // Writes that each fit, until the state would outgrow what a snapshot carries.
  int written = 0;
  Status last;
  for (int i = 0; i < 20; ++i) {
    auto w = log->Write({Put("packages/q" + std::to_string(i), JsonOfSize(900 << 10))}, "", {}, kWall + i);
    if (!w.ok()) {
      last = w.status();
      break;
    }
    ++written;
  }
  EXPECT_EQ(written, static_cast<int>(kMaxStateBytes / (900 << 10)));
  EXPECT_NE(last.message().find("more than the " + std::to_string(kMaxStateBytes) + " a node replicates"),
            std::string::npos)
      << last.message();
  // Shrinking is always allowed, and makes room again.
  EXPECT_TRUE(log->Write({Op{"packages/q0", std::nullopt}}, "", {}, kWall + 100).ok());
  EXPECT_TRUE(log->Write({Put("packages/q0", "{}")}, "", {}, kWall + 101).ok());
}

TEST(DesiredLog, IngestChecksEntriesFromPeers) {
  MemoryLogStorage storage;
  auto log = OpenLog(storage, 7, "a");
  auto ok = MakeEntry(9, 1, kWall, {Put("packages/web", "{}")});
  EXPECT_TRUE(*log->Ingest(ok, kWall));
  EXPECT_FALSE(*log->Ingest(ok, kWall)) << "a duplicate is not new";

  auto zero = MakeEntry(9, 0, kWall, {Put("packages/web", "{}")});
  EXPECT_EQ(log->Ingest(zero, kWall).status().code(), Status::Code::kCorruption);
  auto not_json = MakeEntry(9, 2, kWall, {Put("packages/web", "{\"a\":")});
  auto bad = log->Ingest(not_json, kWall);
  EXPECT_EQ(bad.status().code(), Status::Code::kCorruption);
  EXPECT_NE(bad.status().message().find("packages/web"), std::string::npos) << bad.status().message();
  // Found by fuzz_log (tests/fuzz/corpus/log/regress-*): an object key that is
  // not UTF-8 made the first digest throw, one with a NUL lost its tail.
  for (const std::string& key : {std::string("packages/\xf6"), std::string("packages/a\0b", 12)}) {
    auto dirty = MakeEntry(9, 2, kWall, {Put(key, "{}")});
    EXPECT_EQ(log->Ingest(dirty, kWall).status().code(), Status::Code::kCorruption);
  }
  // fuzz_log again (regress-nul-after-json-value): the JSON parser stops at a
  // NUL, so "{}\0junk" passed as JSON and the junk reached the document text.
  auto nul_value = MakeEntry(9, 2, kWall, {Put("packages/web", std::string("{}\0,junk", 8))});
  EXPECT_EQ(log->Ingest(nul_value, kWall).status().code(), Status::Code::kCorruption);
  Snapshot snap;
  snap.registers[std::string("packages/\xf6")] = Register{std::string("{}"), {}};
  EXPECT_EQ(log->InstallSnapshot(snap).code(), Status::Code::kCorruption);
  EXPECT_FALSE(log->digest().empty());
  auto future = MakeEntry(9, 2, kWall + kMaxClockSkewMicros + 1'000'000, {Put("packages/web", "{}")});
  EXPECT_EQ(log->Ingest(future, kWall).status().code(), Status::Code::kUnavailable);
  EXPECT_TRUE(*log->Ingest(future, kWall + 2'000'000)) << "taken once our clock catches up";
}

TEST(DesiredLog, HighWaterIsContiguousAndMissingFillsTheGap) {
  MemoryLogStorage sa, sb;
  auto a = OpenLog(sa, 1, "a");
  auto b = OpenLog(sb, 2, "b");
  std::vector<Entry> written;
  for (int i = 0; i < 5; ++i) written.push_back(*a->Write({Put("packages/p" + std::to_string(i), "{}")}, "", {}, kWall));
  // b hears seq 1, 2 and 4.
  for (int i : {0, 1, 3}) ASSERT_TRUE(b->Ingest(written[i], kWall).ok());
  EXPECT_EQ(b->high_water(), (HighWater{{1, 2}}));
  EXPECT_TRUE(b->Holds({1, 4}));
  bool more = true;
  auto missing = a->Missing(b->high_water(), 1 << 20, &more);
  EXPECT_FALSE(more);
  ASSERT_EQ(missing.size(), 3u);  // 3, 4, 5: the mark cannot tell that 4 is held
  for (const auto& e : missing) ASSERT_TRUE(b->Ingest(e, kWall).ok());
  EXPECT_EQ(b->high_water(), a->high_water());
  EXPECT_EQ(b->digest(), a->digest());
  EXPECT_TRUE(a->Missing(b->high_water(), 1 << 20, &more).empty());

  // A small byte budget splits the batch and says so.
  MemoryLogStorage sc;
  auto c = OpenLog(sc, 3, "c");
  auto first = a->Missing(c->high_water(), 1, &more);
  EXPECT_EQ(first.size(), 1u);
  EXPECT_TRUE(more);
}

// What may fold by age: each origin's prefix up to its first young entry
// or its first gap, never past what the snapshot already covers.
TEST(DesiredLog, TheAgedPrefixStopsAtAYoungEntryAndAtAGap) {
  MemoryLogStorage s;
  auto log = OpenLog(s, 9, "self");
  for (uint64_t seq = 1; seq <= 5; ++seq)  // origin 1: seq 4 and 5 are young
    ASSERT_TRUE(log->Ingest(MakeEntry(1, seq, kWall + static_cast<int64_t>(seq) * 10, {Put("packages/a", "{}")}), kWall + 100).ok());
  for (uint64_t seq : {1, 2, 4})  // origin 2: seq 3 never arrived
    ASSERT_TRUE(log->Ingest(MakeEntry(2, seq, kWall + 1, {Put("packages/b", "{}")}), kWall + 100).ok());
  auto aged = log->StampedBefore(kWall + 35);
  EXPECT_EQ(aged.cut, (HighWater{{1, 3}, {2, 2}}));
  EXPECT_EQ(aged.entries, 5u);
  EXPECT_GT(aged.bytes, 0u);
  EXPECT_TRUE(log->StampedBefore(kWall).cut.empty());

  ASSERT_EQ(*log->Compact(aged.cut), 5u);
  aged = log->StampedBefore(kWall + 1000);
  EXPECT_EQ(aged.cut, (HighWater{{1, 5}}));  // origin 2 still waits for seq 3
  EXPECT_EQ(aged.entries, 2u);
  EXPECT_GT(log->SnapshotBytes(), 0u);
}

TEST(DesiredLog, CompactedPrefixReachesAReturningNodeAsSnapshotPlusTail) {
  MemoryLogStorage sa, sb;
  auto a = OpenLog(sa, 1, "a");
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(a->Write({Put("packages/p" + std::to_string(i % 4), "{\"v\":" + std::to_string(i) + "}")}, "", {}, kWall + i).ok());
  const auto history_before = a->History();
  auto folded = a->Compact(HighWater{{1, 20}});
  ASSERT_TRUE(folded.ok());
  EXPECT_EQ(*folded, 20u);
  EXPECT_EQ(a->retained(), 10u);
  EXPECT_EQ(a->entries(), 30u);
  EXPECT_EQ(a->History().size(), history_before.size()) << "history survives compaction";
  EXPECT_EQ(a->Current().id, history_before.back().id);

  auto b = OpenLog(sb, 2, "b");
  EXPECT_TRUE(a->Behind(b->high_water()));
  ASSERT_TRUE(b->InstallSnapshot(a->snapshot()).ok());
  bool more = false;
  for (const auto& e : a->Missing(b->high_water(), 1 << 20, &more)) ASSERT_TRUE(b->Ingest(e, kWall).ok());
  EXPECT_EQ(b->digest(), a->digest());
  EXPECT_EQ(b->entries(), 30u);
  EXPECT_EQ(b->Current().id, a->Current().id);
  EXPECT_FALSE(a->Behind(b->high_water()));

  // The compacted log reopens to the same place.
  a.reset();
  auto reopened = OpenLog(sa, 1, "a");
  EXPECT_EQ(reopened->digest(), b->digest());
  EXPECT_EQ(reopened->entries(), 30u);
  EXPECT_EQ(reopened->Write({Put("packages/x", "{}")}, "", {}, kWall)->seq, 31u);
}

// 120 revisions of a 600 KB document are 72 MB of past content: kept whole,
// the snapshot would no longer decode (64 MiB) and the node holding it could
// not restart, and no peer behind the compaction could take it (16 MiB).
TEST(DesiredLog, ASnapshotKeepsThePastContentItsDecodersAndPeersCanTake) {
  MemoryLogStorage sa, sb;
  auto a = OpenLog(sa, 1, "a");
  const std::string blob(600 << 10, 'x');
  for (int i = 0; i < 120; ++i)
    ASSERT_TRUE(
        a->Write({Put("packages/p", "{\"blob\":\"" + blob + "\",\"i\":" + std::to_string(i) + "}")}, "", {}, kWall + i)
            .ok());
  const auto history = a->History();
  ASSERT_EQ(history.size(), 120u);
  ASSERT_TRUE(a->Compact(HighWater{{1, 120}}).ok());
  EXPECT_EQ(a->retained(), 0u);
  EXPECT_EQ(a->History().size(), 120u) << "every revision stays in history";
  EXPECT_LE(EncodeSnapshot(a->snapshot()).size(), kMaxSnapshotDocumentBytes + (2u << 20));

  // It reopens; the newest past content is kept, the oldest is said to be gone.
  a.reset();
  a = OpenLog(sa, 1, "a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->History().size(), 120u);
  auto recent = a->DocumentAt(history[110].id);
  ASSERT_TRUE(recent.ok()) << recent.status().ToString();
  EXPECT_EQ((*recent)["packages"]["p"]["i"], 110);
  auto oldest = a->DocumentAt(history[0].id);
  EXPECT_EQ(oldest.status().code(), Status::Code::kNotFound);
  EXPECT_NE(oldest.status().message().find("no longer kept"), std::string::npos) << oldest.status().message();

  // What a peer behind the compaction gets fits the stream cap, and it can
  // roll back to the revision before the current one.
  const Snapshot sent = a->SnapshotForPeer();
  EXPECT_LT(EncodeSnapshot(sent).size(), size_t{16} << 20);
  auto b = OpenLog(sb, 2, "b");
  ASSERT_TRUE(b->InstallSnapshot(sent).ok());
  EXPECT_EQ(b->digest(), a->digest());
  auto previous = b->DocumentAt(history[118].id);
  ASSERT_TRUE(previous.ok()) << previous.status().ToString();
  EXPECT_EQ((*previous)["packages"]["p"]["i"], 118);
}

TEST(DesiredLog, HistoryMarksTheLoserOfAConcurrentChange) {
  MemoryLogStorage storage;
  auto log = OpenLog(storage, 1, "a");
  auto base = MakeEntry(1, 1, kWall, {Put("packages/web", "{\"version\":\"1\"}")});
  ASSERT_TRUE(log->Ingest(base, kWall).ok());
  // Both writers saw `base` and changed the same package without seeing
  // each other: the later stamp wins and the earlier is marked.
  auto b = MakeEntry(2, 1, kWall + 100, {Put("packages/web", "{\"version\":\"2\"}")}, base.hlc);
  auto c = MakeEntry(3, 1, kWall + 200, {Put("packages/web", "{\"version\":\"3\"}")}, base.hlc);
  ASSERT_TRUE(log->Ingest(c, kWall).ok());
  ASSERT_TRUE(log->Ingest(b, kWall).ok());
  const auto& h = log->History();
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].conflict, "");
  EXPECT_EQ(h[1].origin, 2u);
  EXPECT_EQ(h[1].conflict, "overwritten by concurrent change n3#1 on packages/web");
  EXPECT_EQ(h[2].conflict, "");
  EXPECT_EQ(log->state().Document()["packages"]["web"]["version"], "3");

  // A sequential change (its writer had seen the other) is no conflict.
  auto d = MakeEntry(2, 2, kWall + 300, {Put("packages/web", "{\"version\":\"4\"}")}, c.hlc);
  ASSERT_TRUE(log->Ingest(d, kWall).ok());
  EXPECT_EQ(log->History().back().conflict, "");
}

TEST(DesiredLog, HistoryExtendedChangeByChangeEqualsAFullReplay) {
  MemoryLogStorage storage;
  auto log = OpenLog(storage, 1, "a");
  std::mt19937_64 rng(3);
  Hlc seen;
  for (int i = 0; i < 200; ++i) {
    const std::string key = "packages/p" + std::to_string(rng() % 5);
    if (rng() % 3 == 0) {
      // A peer's change, sometimes stamped before ours (out of order).
      auto e = MakeEntry(2 + rng() % 3, 1 + i, kWall + static_cast<int64_t>(rng() % 4000),
                         {Put(key, "{\"v\":" + std::to_string(i) + "}")}, Hlc{kWall + static_cast<int64_t>(rng() % 4000), 0});
      ASSERT_TRUE(log->Ingest(e, kWall).ok());
    } else {
      auto e = log->Write({Put(key, "{\"v\":" + std::to_string(i) + "}")}, "", seen, kWall + i * 20);
      ASSERT_TRUE(e.ok());
      seen = e->hlc;
    }
    if (rng() % 2) (void)log->History();  // keep the incremental path busy
  }
  const auto incremental = log->History();
  log.reset();
  auto fresh = OpenLog(storage, 1, "a");
  const auto& replayed = fresh->History();
  ASSERT_EQ(incremental.size(), replayed.size());
  for (size_t i = 0; i < replayed.size(); ++i) {
    EXPECT_EQ(incremental[i].id, replayed[i].id) << i;
    EXPECT_EQ(incremental[i].conflict, replayed[i].conflict) << i;
    EXPECT_EQ(incremental[i].changed, replayed[i].changed) << i;
  }
}

TEST(DesiredLog, RevisionsAreFoundByPrefixAndKeepTheirContent) {
  MemoryLogStorage storage;
  auto log = OpenLog(storage, 1, "a");
  auto e1 = log->Write({Put("packages/web", "{\"version\":\"1\"}")}, "", {}, kWall);
  const Revision r1 = log->Current();
  log->Write({Put("packages/web", "{\"version\":\"2\"}")}, "", e1->hlc, kWall);
  const Revision r2 = log->Current();
  EXPECT_NE(r1.id, r2.id);
  EXPECT_EQ(r1.id.size(), 12u);
  EXPECT_EQ(log->Find(r1.id.substr(0, 6))->id, r1.id);
  EXPECT_EQ(log->Find("ab").status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(log->Find("zzzzzz").status().code(), Status::Code::kNotFound);
  auto doc = log->DocumentAt(r1.id);
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ((*doc)["packages"]["web"]["version"], "1");
  EXPECT_EQ(RevisionId(r2.hlc, log->digest()), r2.id);
}

TEST(OpsBetween, PutsWhatDiffersAndDeletesWhatIsGone) {
  Json from = Json::parse(R"({"packages":{"web":{"version":"1"},"db":{"version":"2"}},"policy":{"batch":1}})");
  Json to = Json::parse(R"({"packages":{"web":{"version":"2"},"db":{"version":"2"}}})");
  auto ops = OpsBetween(from, to);
  std::sort(ops.begin(), ops.end(), [](const Op& a, const Op& b) { return a.key < b.key; });
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_EQ(ops[0].key, "packages/web");
  EXPECT_EQ(ops[0].value, "{\"version\":\"2\"}");
  EXPECT_EQ(ops[1].key, "policy");
  EXPECT_FALSE(ops[1].value.has_value());
  EXPECT_TRUE(OpsBetween(to, to).empty());
}

TEST(LogCodec, EveryMessageRoundTrips) {
  Entry e = MakeEntry(0xfeedface12345678ULL, 42, kWall, {Put("packages/web", "{}"), Op{"policy", std::nullopt}});
  e.note = "apply";
  e.base = Hlc{kWall - 5, 3};
  auto back = DecodeEntry(EncodeEntry(e));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, e);
  EXPECT_LE(EncodeEntry(e).size(), EstimateEntryBytes(e));

  SyncRequest req{"n1", HighWater{{1, 5}, {2, 9}}, {e}};
  auto m = DecodeLogMessage(EncodeLogMessage(req));
  ASSERT_TRUE(m.ok());
  auto* r = std::get_if<SyncRequest>(&*m);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->from, "n1");
  EXPECT_EQ(r->have, req.have);
  EXPECT_EQ(r->push, req.push);

  MemoryLogStorage storage;
  auto log = OpenLog(storage, 1, "a");
  for (int i = 0; i < 5; ++i) log->Write({Put("packages/p" + std::to_string(i), "{}")}, "", {}, kWall);
  ASSERT_TRUE(log->Compact(log->high_water()).ok());
  SyncReply reply{log->high_water(), {e}, log->snapshot(), true};
  m = DecodeLogMessage(EncodeLogMessage(reply));
  ASSERT_TRUE(m.ok());
  auto* rp = std::get_if<SyncReply>(&*m);
  ASSERT_NE(rp, nullptr);
  ASSERT_TRUE(rp->snapshot.has_value());
  EXPECT_EQ(rp->snapshot->registers, log->snapshot().registers);
  EXPECT_EQ(rp->snapshot->covered, log->snapshot().covered);
  EXPECT_TRUE(rp->more);

  m = DecodeLogMessage(EncodeLogMessage(Announce{{3, 4}, "127.0.0.1:7946"}));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(std::get<Announce>(*m).holder, "127.0.0.1:7946");
}

TEST(LogCodec, BadBytesAreCorruptionNeverACrash) {
  Entry e = MakeEntry(1, 1, kWall, {Put("packages/web", "{\"version\":\"1\"}")});
  Bytes good = EncodeLogMessage(e);
  std::mt19937_64 rng(17);
  for (size_t cut = 0; cut < good.size(); cut += 8) {
    auto r = DecodeLogMessage(ByteView(good.data(), cut));
    if (r.ok()) continue;  // a prefix can be a valid message
    EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
  }
  for (int i = 0; i < 2000; ++i) {
    Bytes b = good;
    for (int k = 0; k < 4; ++k) b[rng() % b.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    auto r = DecodeLogMessage(b);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
    }
  }
  Bytes odd(13, 0xab);
  EXPECT_EQ(DecodeLogMessage(odd).status().code(), Status::Code::kCorruption);
  EXPECT_EQ(DecodeEntry(Bytes{}).status().code(), Status::Code::kCorruption);
}

}  // namespace
}  // namespace starling::store
