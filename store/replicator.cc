#include "starling/store/replicator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "starling/store/log_codec.h"

namespace starling::store {

namespace {
// An exchange that keeps finding more to ship continues, up to this many
// rounds in a row (a large backlog then waits for the next tick).
constexpr int kMaxRounds = 64;
}  // namespace

Replicator::Replicator(DesiredLog& log, LogGossip& gossip, Clock& clock, Random& random, ReplicatorConfig config)
    : log_(log), gossip_(gossip), clock_(clock), random_(random), cfg_(config), token_(std::make_shared<bool>(true)) {
  for (const char* c : {"entries_written", "entries_received", "entries_synced", "entries_duplicate",
                        "entries_deferred", "announces_received", "sync_rounds", "sync_failures", "bad_messages",
                        "anti_entropy_bytes_sent", "anti_entropy_bytes_received", "snapshots_sent",
                        "snapshots_installed", "entries_compacted", "gossip_bytes_queued", "eager_bytes_sent"})
    counters_[c] = 0;
}

Replicator::~Replicator() {
  if (timer_) clock_.Cancel(timer_);
}

void Replicator::Start() {
  // Spread the first exchange over one interval so that nodes started
  // together do not all sync at once.
  timer_ = clock_.Schedule(Duration(random_.Uniform(cfg_.sync_interval.count()) + 1), [this] { Tick(); });
}

void Replicator::Tick() {
  timer_ = 0;
  auto peers = gossip_.RandomLivePeers(1, random_);
  if (!peers.empty()) {
    const auto& p = peers.front();
    if (!in_flight_.count(p.addr)) Exchange(p.addr, p.name, {}, 0);
  }
  MaybeCompact();
  const auto jitter = Duration(random_.Uniform(cfg_.sync_interval.count() / 4 + 1));
  timer_ = clock_.Schedule(cfg_.sync_interval - cfg_.sync_interval / 8 + jitter, [this] { Tick(); });
}

void Replicator::Bad(const std::string& from, const Status& s) {
  ++counters_["bad_messages"];
  spdlog::warn("dropped a log message from {}: {}", from, s.message());
}

void Replicator::Changed() {
  if (on_change_) on_change_();
}

Result<Entry> Replicator::Write(std::vector<Op> ops, std::string note, Hlc base) {
  auto e = log_.Write(std::move(ops), std::move(note), base, clock_.WallMicros());
  if (!e.ok()) return e;
  ++counters_["entries_written"];
  Spread(*e, true);
  Changed();
  return e;
}

void Replicator::Spread(const Entry& e, bool eager) {
  char key[48];
  std::snprintf(key, sizeof key, "log/%016" PRIx64 "/%" PRIu64, e.origin, e.seq);
  Bytes msg = EncodeLogMessage(e);
  if (msg.size() > gossip_.BroadcastBudget()) msg = EncodeLogMessage(Announce{e.id(), gossip_.SelfAddr()});
  if (eager && cfg_.eager_fanout > 0) {
    for (const auto& p : gossip_.RandomLivePeers(static_cast<size_t>(cfg_.eager_fanout), random_)) {
      counters_["eager_bytes_sent"] += msg.size();
      gossip_.SendPacket(p.addr, msg);
    }
  }
  counters_["gossip_bytes_queued"] += msg.size();
  gossip_.Broadcast(key, std::move(msg));
}

bool Replicator::IngestAll(const std::vector<Entry>& entries, const char* counter) {
  bool any = false;
  const int64_t wall = clock_.WallMicros();
  // Entries learned by anti-entropy are gossiped on only while they are
  // news; an old backlog would otherwise flood everyone with duplicates.
  const bool rumour = std::string_view(counter) == "entries_received";
  constexpr int64_t kNewsMicros = 30'000'000;
  for (const auto& e : entries) {
    auto r = log_.Ingest(e, wall);
    if (!r.ok()) {
      if (r.status().code() == Status::Code::kUnavailable) {
        ++counters_["entries_deferred"];
        spdlog::warn("deferred a change: {}", r.status().message());
      } else {
        Bad("a peer", r.status());
      }
      continue;
    }
    if (!*r) {
      ++counters_["entries_duplicate"];
      continue;
    }
    ++counters_[counter];
    any = true;
    if (rumour || e.hlc.wall > wall - kNewsMicros) Spread(e, rumour);
  }
  if (any) Changed();
  return any;
}

void Replicator::HandlePacket(const std::string& from, ByteView data) {
  auto m = DecodeLogMessage(data);
  if (!m.ok()) {
    Bad(from, m.status());
    return;
  }
  if (auto* e = std::get_if<Entry>(&*m)) {
    IngestAll({*e}, "entries_received");
  } else if (auto* a = std::get_if<Announce>(&*m)) {
    ++counters_["announces_received"];
    if (!log_.Holds(a->id) && !in_flight_.count(a->holder)) Exchange(a->holder, NameOf(a->holder), {}, 0);
  } else {
    Bad(from, Status::Corruption("sync message sent as a datagram"));
  }
}

Bytes Replicator::HandleStream(const std::string& from, ByteView data) {
  counters_["anti_entropy_bytes_received"] += data.size();
  auto m = DecodeLogMessage(data);
  if (!m.ok()) {
    Bad(from, m.status());
    return {};
  }
  auto* req = std::get_if<SyncRequest>(&*m);
  if (!req) {
    Bad(from, Status::Corruption("stream request that is not a sync request"));
    return {};
  }
  // Only live members' statements count (which also bounds the map). The
  // stream's source address is an ephemeral port, so the request names its
  // sender.
  if (tracks_peers_ && gossip_.LivePeer(req->from)) peer_have_[req->from] = req->have;
  IngestAll(req->push, "entries_synced");
  SyncReply reply;
  reply.have = log_.high_water();
  if (log_.Behind(req->have)) {
    reply.snapshot = log_.SnapshotForPeer();
    ++counters_["snapshots_sent"];
  }
  reply.entries = log_.Missing(req->have, cfg_.batch_bytes, &reply.more);
  Bytes out = EncodeLogMessage(reply);
  counters_["anti_entropy_bytes_sent"] += out.size();
  return out;
}

void Replicator::SyncWith(const std::string& addr) {
  if (!in_flight_.count(addr)) Exchange(addr, NameOf(addr), {}, 0);
}

// The name is wanted only to keep the peer's marks; finding it walks the
// member list, which in a large cluster would be a walk per exchange.
std::string Replicator::NameOf(const std::string& addr) const { return tracks_peers_ ? gossip_.NameAt(addr) : ""; }

void Replicator::Exchange(const std::string& addr, const std::string& name, std::vector<Entry> push, int round) {
  ++counters_["sync_rounds"];
  ++in_flight_[addr];
  SyncRequest req{log_.origin_name(), log_.high_water(), std::move(push)};
  Bytes bytes = EncodeLogMessage(req);
  counters_["anti_entropy_bytes_sent"] += bytes.size();
  std::weak_ptr<bool> alive = token_;
  gossip_.SendStream(addr, std::move(bytes), cfg_.stream_timeout,
                     [this, alive, addr, name, round](Result<Bytes> r) {
                       if (alive.expired()) return;
                       if (--in_flight_[addr] <= 0) in_flight_.erase(addr);
                       if (!r.ok()) {
                         ++counters_["sync_failures"];
                         spdlog::debug("log sync with {} failed: {}", addr, r.status().ToString());
                         return;
                       }
                       HandleReply(addr, name, *r, round);
                     });
}

void Replicator::HandleReply(const std::string& addr, const std::string& name, ByteView data, int round) {
  counters_["anti_entropy_bytes_received"] += data.size();
  auto m = DecodeLogMessage(data);
  if (!m.ok()) {
    Bad(addr, m.status());
    return;
  }
  auto* reply = std::get_if<SyncReply>(&*m);
  if (!reply) {
    Bad(addr, Status::Corruption("sync answered with something else"));
    return;
  }
  if (!name.empty() && tracks_peers_) peer_have_[name] = reply->have;
  if (reply->snapshot) {
    if (Status s = log_.InstallSnapshot(std::move(*reply->snapshot)); !s.ok()) {
      spdlog::error("could not install the snapshot from {}: {}", addr, s.ToString());
    } else {
      ++counters_["snapshots_installed"];
      Changed();
    }
  }
  IngestAll(reply->entries, "entries_synced");
  if (round + 1 >= kMaxRounds) return;
  bool more = false;
  std::vector<Entry> push = log_.Missing(reply->have, cfg_.batch_bytes, &more);
  if (!push.empty() || reply->more) Exchange(addr, name, std::move(push), round + 1);
}

void Replicator::MaybeCompact() {
  // Forget what departed peers said; a returning one states it again.
  tracks_peers_ = gossip_.NumLivePeers() <= cfg_.acked_fold_peers;
  const bool tracks = tracks_peers_;
  if (!tracks) peer_have_.clear();
  for (auto it = peer_have_.begin(); it != peer_have_.end();)
    it = gossip_.LivePeer(it->first) ? std::next(it) : peer_have_.erase(it);
  HighWater cut;
  if (log_.retained() > 0) {
    const int64_t align = std::max<int64_t>(1, cfg_.fold_align.count());
    const int64_t before = clock_.WallMicros() - cfg_.fold_after.count();
    const auto aged = log_.StampedBefore(before - ((before % align) + align) % align);
    if (aged.entries >= cfg_.fold_entries ||
        (aged.bytes >= cfg_.fold_bytes && aged.bytes >= log_.SnapshotBytes() / 4))
      cut = aged.cut;
  }
  if (tracks && log_.retained() >= cfg_.compact_after) {
    HighWater acked = log_.high_water();
    bool heard_all = true;
    for (const auto& p : gossip_.LivePeers()) {
      auto it = peer_have_.find(p.name);
      if (it == peer_have_.end()) {
        heard_all = false;  // not heard from every live peer yet
        break;
      }
      for (auto& [o, s] : acked) {
        auto q = it->second.find(o);
        s = std::min(s, q == it->second.end() ? uint64_t{0} : q->second);
      }
    }
    if (heard_all)
      for (const auto& [o, s] : acked) cut[o] = std::max(cut[o], s);
  }
  if (cut.empty()) return;
  auto folded = log_.Compact(cut);
  if (!folded.ok()) {
    spdlog::error("compacting the desired-state log failed: {}", folded.status().ToString());
    return;
  }
  counters_["entries_compacted"] += *folded;
  if (*folded) spdlog::info("folded {} log entries into the snapshot", *folded);
}

}  // namespace starling::store
