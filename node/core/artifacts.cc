#include "artifacts.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "rollout.h"
#include "schema/artifact.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/text.h"

namespace starling::node {

using store::Json;
namespace aw = artifactwire;

namespace {

constexpr size_t kMaxRequestBytes = 512;
// A chunk plus the reply's framing.
constexpr size_t kMaxReplyBytes = (16u << 20) + 4096;
constexpr Duration kListTimeout = std::chrono::seconds(3);

std::string Hex(const std::string& digest) { return digest.substr(7); }

Bytes ToBitmap(const std::vector<bool>& bits) {
  Bytes out((bits.size() + 7) / 8, 0);
  for (size_t i = 0; i < bits.size(); ++i)
    if (bits[i]) out[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
  return out;
}

std::vector<bool> FromBitmap(const Bytes& map, size_t n) {
  std::vector<bool> out(n, false);
  for (size_t i = 0; i < n && i / 8 < map.size(); ++i) out[i] = (map[i / 8] >> (i % 8)) & 1;
  return out;
}

// Digests named by the packages of `doc`.
void PackageArtifacts(const Json& doc, std::set<std::string>* out) {
  if (auto a = doc.find("agent"); a != doc.end() && a->is_object())
    if (auto d = a->find("artifact"); d != a->end() && d->is_string()) out->insert(d->get<std::string>());
  auto p = doc.find("packages");
  if (p == doc.end() || !p->is_object()) return;
  for (const auto& [_, pkg] : p->items()) {
    if (!pkg.is_object()) continue;
    auto a = pkg.find("artifact");
    if (a != pkg.end() && a->is_string()) out->insert(a->get<std::string>());
  }
}

std::string Percent(size_t part, size_t whole) {
  return std::to_string(whole == 0 ? 100 : part * 100 / whole) + "%";
}

}  // namespace

Bytes EncodeArtifactRequest(const std::string& digest, std::optional<uint32_t> chunk) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<aw::ArtifactRequest>();
  r.setFormatVersion(aw::FORMAT_VERSION);
  r.setDigest(digest);
  if (chunk) {
    r.setChunk(*chunk);
  } else {
    r.setHave();
  }
  return capnp_bytes::Flat(mb);
}

Result<ArtifactRequest> DecodeArtifactRequest(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<ArtifactRequest>(
      bytes, kMaxRequestBytes, "artifact request", [](capnp::FlatArrayMessageReader& reader) -> Result<ArtifactRequest> {
        auto r = reader.getRoot<aw::ArtifactRequest>();
        if (r.getFormatVersion() != aw::FORMAT_VERSION)
          return Status::Corruption("artifact request format " + std::to_string(r.getFormatVersion()));
        ArtifactRequest out;
        out.digest = capnp_bytes::Str(r.getDigest());
        if (!IsArtifactDigest(out.digest)) return Status::Corruption("artifact request with a malformed digest");
        if (r.which() == aw::ArtifactRequest::CHUNK) out.chunk = r.getChunk();
        return out;
      });
}

Bytes EncodeArtifactReply(const ArtifactReply& reply) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<aw::ArtifactReply>();
  r.setFormatVersion(aw::FORMAT_VERSION);
  switch (reply.kind) {
    case ArtifactReply::kHave: r.setHave(kj::arrayPtr(reply.data.data(), reply.data.size())); break;
    case ArtifactReply::kChunk: r.setChunk(kj::arrayPtr(reply.data.data(), reply.data.size())); break;
    case ArtifactReply::kBusy: r.setBusy(reply.busy); break;
    case ArtifactReply::kMissing: r.setMissing(); break;
  }
  return capnp_bytes::Flat(mb);
}

Result<ArtifactReply> DecodeArtifactReply(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<ArtifactReply>(
      bytes, kMaxReplyBytes, "artifact reply", [](capnp::FlatArrayMessageReader& reader) -> Result<ArtifactReply> {
        auto r = reader.getRoot<aw::ArtifactReply>();
        if (r.getFormatVersion() != aw::FORMAT_VERSION)
          return Status::Corruption("artifact reply format " + std::to_string(r.getFormatVersion()));
        ArtifactReply out;
        switch (r.which()) {
          case aw::ArtifactReply::HAVE: {
            auto d = r.getHave();
            out.kind = ArtifactReply::kHave;
            out.data.assign(d.begin(), d.end());
            break;
          }
          case aw::ArtifactReply::CHUNK: {
            auto d = r.getChunk();
            out.kind = ArtifactReply::kChunk;
            out.data.assign(d.begin(), d.end());
            break;
          }
          case aw::ArtifactReply::BUSY:
            out.kind = ArtifactReply::kBusy;
            out.busy = capnp_bytes::Str(r.getBusy());
            if (out.busy.size() > 256 || !text::IsCleanName(out.busy)) out.busy.clear();
            break;
          default:
            out.kind = ArtifactReply::kMissing;
        }
        return out;
      });
}

std::optional<ArtifactManifest> CatalogEntry(const store::State& state, const std::string& digest) {
  if (!IsArtifactDigest(digest)) return std::nullopt;
  const store::Register* reg = state.Find(kArtifactKeyPrefix + Hex(digest));
  if (!reg || !reg->value) return std::nullopt;
  auto m = ArtifactManifest::FromJson(Json::parse(*reg->value, nullptr, false));
  if (!m.ok() || m->digest != digest) return std::nullopt;
  return std::move(m).value();
}

std::map<std::string, ArtifactManifest> Catalog(const store::State& state) {
  std::map<std::string, ArtifactManifest> out;
  const std::string prefix = kArtifactKeyPrefix;
  state.ForEach(
      [&](const Atom& key, const store::Register& r) {
        if (!r.value) return;
        auto m = ArtifactManifest::FromJson(Json::parse(r.value->str(), nullptr, false));
        if (m.ok() && key == prefix + Hex(m->digest)) out.emplace(m->digest, std::move(m).value());
      },
      prefix);
  return out;
}

std::vector<std::string> UnknownArtifacts(const Json& doc, const store::State& state) {
  std::vector<std::string> problems;
  auto p = doc.find("packages");
  if (p == doc.end() || !p->is_object()) return problems;
  for (const auto& [name, pkg] : p->items()) {
    if (!pkg.is_object()) continue;
    auto a = pkg.find("artifact");
    if (a == pkg.end() || !a->is_string() || !IsArtifactDigest(a->get<std::string>())) continue;
    if (!CatalogEntry(state, a->get<std::string>()))
      problems.push_back("packages." + name + ".artifact: unknown artifact " + a->get<std::string>() +
                         " (add the file first: starling artifact add FILE)");
  }
  return problems;
}

Artifacts::Artifacts(std::string self, Clock& clock, Random& random, membership::UserChannels& channels,
                     store::Replicator& replicator, ArtifactStore& store, Offload offload,
                     std::function<std::string()> roles_tag, ArtifactConfig config)
    : self_(std::move(self)),
      clock_(clock),
      random_(random),
      channels_(channels),
      replicator_(replicator),
      store_(store),
      offload_(std::move(offload)),
      roles_tag_(std::move(roles_tag)),
      cfg_(config) {}

Artifacts::~Artifacts() {
  *alive_ = false;
  if (timer_) clock_.Cancel(timer_);
}

void Artifacts::Start() {
  channels_.OnAsync(membership::Channel::kArtifacts, nullptr,
                    [this](const std::string& from, ByteView data, membership::Memberlist::StreamReply reply) {
                      HandleStream(from, data, std::move(reply));
                    });
  last_gc_ = clock_.Now();
  CountHeld();
  Refresh();
  timer_ = clock_.Schedule(cfg_.tick, [this] { Tick(); });
}

void Artifacts::CountHeld() {
  auto count = std::make_shared<size_t>(0);
  offload_([this, count] { *count = store_.Complete().size(); },
           [this, count, alive = alive_] {
             if (*alive) held_ = *count;
           });
}

void Artifacts::Tick() {
  timer_ = clock_.Schedule(cfg_.tick, [this] { Tick(); });
  std::vector<std::string> active;
  for (const auto& [digest, _] : downloads_) active.push_back(digest);
  for (const auto& digest : active) Pump(digest);
  if (clock_.Now() - last_gc_ >= cfg_.gc_every) {
    last_gc_ = clock_.Now();
    CollectGarbage();
  }
}

std::set<std::string> Artifacts::Wanted() const {
  const Json& doc = replicator_.log().state().Document();
  std::set<std::string> out = needed_;
  if (Commissioned(doc, self_)) PackageArtifacts(NodeSpec(doc, NodeRoles(doc, self_, roles_tag_ ? roles_tag_() : "")), &out);
  return out;
}

std::set<std::string> Artifacts::Referenced() const {
  const store::DesiredLog& log = replicator_.log();
  std::set<std::string> out = needed_;
  PackageArtifacts(log.state().Document(), &out);
  // A rollout in progress may still move nodes to its target or back.
  if (auto r = ReadRecord<RolloutRecord>(log.state(), kRolloutKey)) {
    for (const std::string& rev : {r->revision, r->from}) {
      if (rev.empty()) continue;
      if (auto doc = log.DocumentAt(rev); doc.ok()) PackageArtifacts(*doc, &out);
    }
  }
  return out;
}

void Artifacts::Refresh() {
  const store::State& state = replicator_.log().state();
  for (const auto& digest : Wanted()) {
    if (removing_.count(digest) || store_.Has(digest) || downloads_.count(digest) || beginning_.count(digest))
      continue;
    if (auto m = CatalogEntry(state, digest)) StartDownload(*m);
  }
}

std::optional<std::string> Artifacts::Need(const std::string& digest, std::string* progress) {
  if (removing_.count(digest)) {
    needed_.insert(digest);
    if (progress) *progress = "being removed as unreferenced; fetched again once gone";
    return std::nullopt;
  }
  if (store_.Has(digest)) {
    if (checked_.erase(digest)) {
      needed_.erase(digest);  // from now on the desired state decides whether it stays
      return store_.PathOf(digest);
    }
    if (!checking_.count(digest)) CheckLocalCopy(digest);
    if (progress) *progress = "checking this node's copy against its digest";
    return std::nullopt;
  }
  needed_.insert(digest);
  auto d = downloads_.find(digest);
  if (d == downloads_.end()) {
    auto m = CatalogEntry(replicator_.log().state(), digest);
    if (!m) {
      if (progress) *progress = "not in the artifact catalog (yet)";
      return std::nullopt;
    }
    if (!beginning_.count(digest)) StartDownload(*m);
    if (progress) *progress = "starting";
    return std::nullopt;
  }
  if (progress) {
    size_t sources = 0;
    for (const auto& [_, p] : d->second.peers) sources += std::count(p.has.begin(), p.has.end(), true) > 0;
    *progress = std::to_string(d->second.held) + " of " + std::to_string(d->second.m.ChunkCount()) +
                " chunks, " + std::to_string(sources) + " peer(s) with chunks";
  }
  return std::nullopt;
}

void Artifacts::CheckLocalCopy(const std::string& digest) {
  checking_.insert(digest);
  auto result = std::make_shared<Status>(Status::Internal("not run"));
  offload_(
      [this, digest, result] {
        *result = store_.Verify(digest);
        if (result->code() == Status::Code::kCorruption) {
          if (Status s = store_.Remove(digest); !s.ok()) *result = s;
        }
      },
      [this, digest, result, alive = alive_] {
        if (!*alive) return;
        checking_.erase(digest);
        if (result->ok()) {
          checked_.insert(digest);
          return;
        }
        if (result->code() == Status::Code::kCorruption) {
          ++stats_.corrupt_copies;
          spdlog::error("{}; the copy is removed and fetched again", result->message());
        } else {
          spdlog::warn("artifact {}: this node's copy could not be checked: {}", digest, result->message());
        }
        CountHeld();
      });
}

void Artifacts::StartDownload(const ArtifactManifest& m) {
  beginning_.insert(m.digest);
  auto result = std::make_shared<Result<std::vector<bool>>>(Status::Internal("not run"));
  offload_([this, m, result] { *result = store_.Begin(m); },
           [this, m, result, alive = alive_] {
             if (!*alive) return;
             beginning_.erase(m.digest);
             if (!result->ok()) {
               spdlog::error("artifact {} ({}): cannot start fetching: {}", m.name, m.digest,
                             result->status().message());
               return;
             }
             Download& d = downloads_[m.digest];
             d.m = m;
             d.id = next_id_++;
             d.have = std::move(**result);
             d.held = static_cast<size_t>(std::count(d.have.begin(), d.have.end(), true));
             d.ready = true;
             d.started = clock_.Now();
             spdlog::info("artifact {} ({}, {} bytes): fetching from peers{}", m.name, m.digest, m.size,
                          d.held ? ", resuming with " + std::to_string(d.held) + " chunks" : std::string());
             Pump(m.digest);
           });
}

void Artifacts::Pump(const std::string& digest) {
  auto it = downloads_.find(digest);
  if (it == downloads_.end() || !it->second.ready || it->second.finishing) return;
  Download& d = it->second;
  const size_t n = d.m.ChunkCount();
  if (d.held == n) return Finish(digest);
  const Time now = clock_.Now();
  if (now >= d.next_query) Query(d);
  for (auto s = d.shunned.begin(); s != d.shunned.end();) s = s->second <= now ? d.shunned.erase(s) : std::next(s);
  for (auto r = d.refused.begin(); r != d.refused.end();) r = r->second <= now ? d.refused.erase(r) : std::next(r);

  // "Near": within twice the round trip to the nearest peer we know of
  // (network coordinates); with no estimates every peer counts as near.
  std::map<std::string, std::optional<Duration>> rtt;
  std::optional<Duration> nearest;
  for (const auto& [name, p] : d.peers) {
    rtt[name] = RttTo(name);
    if (rtt[name] && (!nearest || *rtt[name] < *nearest)) nearest = rtt[name];
  }
  auto is_near = [&](const std::string& name) {
    const std::optional<Duration>& r = rtt[name];
    return !nearest || !r || *r <= 2 * *nearest;
  };
  while (d.in_flight.size() < cfg_.max_in_flight) {
    // Preferring chunks some peer other than the origin holds (the origin is
    // the one source every fetcher knows from the start), then chunks a near
    // peer holds (a far site's copy crosses once, then spreads within it),
    // then the rarest.
    std::optional<std::tuple<int, int, size_t, uint64_t>> best_score;
    size_t best_chunk = 0;
    std::vector<std::string> best_peers;
    for (size_t c = 0; c < n; ++c) {
      if (d.have[c] || d.in_flight.count(c) || d.writing.count(c)) continue;
      std::vector<std::string> others, origin;
      size_t holders = 0;
      for (const auto& [name, p] : d.peers) {
        if (c >= p.has.size() || !p.has[c]) continue;
        ++holders;
        if (d.shunned.count(name) || p.in_flight >= cfg_.per_peer || d.refused.count({name, c})) continue;
        (name == d.m.added_by ? origin : others).push_back(name);
      }
      if (others.empty() && origin.empty()) continue;
      const std::vector<std::string>& from = others.empty() ? origin : others;
      const bool near = std::any_of(from.begin(), from.end(), is_near);
      std::tuple<int, int, size_t, uint64_t> score{others.empty() ? 1 : 0, near ? 0 : 1, holders, random_.Next()};
      if (!best_score || score < *best_score) {
        best_score = score;
        best_chunk = c;
        best_peers = others.empty() ? origin : others;
      }
    }
    if (!best_score) break;
    // The nearest holder first; its per-peer cap spreads the rest.
    RequestChunk(d, best_chunk, Nearest(best_peers));
  }
}

void Artifacts::Query(Download& d) {
  d.next_query = clock_.Now() + cfg_.query_every;
  std::vector<std::string> names;
  for (const auto& m : channels_.list().Members())
    if (m.name != self_ && m.name != d.m.added_by && m.status == membership::MemberStatus::kAlive)
      names.push_back(m.name);
  // A few each round: the nearest half (network coordinates), the rest at
  // random, so that over rounds every member is asked.
  for (size_t i = 0; i + 1 < names.size(); ++i) std::swap(names[i], names[i + random_.Uniform(names.size() - i)]);
  const size_t nearest = std::min(names.size(), (cfg_.query_peers + 1) / 2);
  std::partial_sort(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(nearest), names.end(),
                    [this](const std::string& a, const std::string& b) {
                      const auto ra = RttTo(a), rb = RttTo(b);
                      return ra && (!rb || *ra < *rb);
                    });
  if (names.size() > cfg_.query_peers) names.resize(cfg_.query_peers);
  if (d.m.added_by != self_) names.push_back(d.m.added_by);
  for (const auto& name : names) {
    auto addr = AddrOf(name);
    if (!addr) continue;
    channels_.SendStream(membership::Channel::kArtifacts, *addr, EncodeArtifactRequest(d.m.digest, std::nullopt),
                         cfg_.chunk_timeout,
                         [this, digest = d.m.digest, id = d.id, name, alive = alive_](Result<Bytes> r) {
                           if (!*alive) return;
                           auto it = downloads_.find(digest);
                           if (it == downloads_.end() || it->second.id != id || !r.ok()) return;
                           auto reply = DecodeArtifactReply(*r);
                           if (!reply.ok() || reply->kind != ArtifactReply::kHave) return;
                           Download& d = it->second;
                           d.peers[name].has = FromBitmap(reply->data, d.m.ChunkCount());
                           Pump(digest);
                         });
  }
}

std::optional<Duration> Artifacts::RttTo(const std::string& name) const {
  auto mine = channels_.list().CoordinateOf(self_);
  auto theirs = channels_.list().CoordinateOf(name);
  if (!mine || !theirs) return std::nullopt;
  return mine->DistanceTo(*theirs);
}

bool Artifacts::MuchFarther(const std::string& asker, const std::string& other) const {
  const membership::Memberlist& list = channels_.list();
  auto a = list.CoordinateOf(asker), o = list.CoordinateOf(other), me = list.CoordinateOf(self_);
  return a && o && me && a->DistanceTo(*o) > 2 * a->DistanceTo(*me);
}

std::string Artifacts::Nearest(const std::vector<std::string>& names) {
  std::optional<std::pair<Duration, std::string>> best;
  for (const std::string& n : names)
    if (auto rtt = RttTo(n); rtt && (!best || *rtt < best->first)) best = std::pair{*rtt, n};
  return best ? best->second : names[random_.Uniform(names.size())];
}

void Artifacts::RequestChunk(Download& d, size_t chunk, const std::string& peer) {
  auto addr = AddrOf(peer);
  if (!addr) {
    d.peers.erase(peer);
    return;
  }
  d.in_flight[chunk] = peer;
  ++d.peers[peer].in_flight;
  channels_.SendStream(membership::Channel::kArtifacts, *addr,
                       EncodeArtifactRequest(d.m.digest, static_cast<uint32_t>(chunk)), cfg_.chunk_timeout,
                       [this, digest = d.m.digest, id = d.id, chunk, peer, alive = alive_](Result<Bytes> r) {
                         if (!*alive) return;
                         OnChunk(digest, id, chunk, peer, std::move(r));
                       });
}

void Artifacts::OnChunk(const std::string& digest, uint64_t id, size_t chunk, const std::string& peer,
                        Result<Bytes> r) {
  auto it = downloads_.find(digest);
  if (it == downloads_.end() || it->second.id != id) return;
  Download& d = it->second;
  d.in_flight.erase(chunk);
  if (auto p = d.peers.find(peer); p != d.peers.end() && p->second.in_flight > 0) --p->second.in_flight;
  const Time now = clock_.Now();
  if (!r.ok()) {
    spdlog::debug("artifact {}: chunk {} from {}: {}", digest, chunk, peer, r.status().message());
    d.shunned[peer] = now + cfg_.shun_failed;
    return Pump(digest);
  }
  auto reply = DecodeArtifactReply(*r);
  if (!reply.ok()) {
    ++stats_.bad_requests;
    spdlog::warn("artifact {}: a malformed reply from {}: {}", digest, peer, reply.status().message());
    d.shunned[peer] = now + cfg_.shun_bad;
    return Pump(digest);
  }
  switch (reply->kind) {
    case ArtifactReply::kChunk: {
      if (d.have[chunk] || d.writing.count(chunk)) break;
      // Hashing and writing a chunk (~1 MiB) is blocking work: it goes to
      // the worker, and the chunk counts as taken until it comes back.
      d.writing.insert(chunk);
      auto status = std::make_shared<Status>(Status::Internal("not run"));
      auto data = std::make_shared<Bytes>(std::move(reply->data));
      offload_([this, m = d.m, chunk, data, status] { *status = store_.WriteChunk(m, chunk, *data); },
               [this, digest, id, chunk, peer, data, status, alive = alive_] {
                 if (!*alive) return;
                 ChunkWritten(digest, id, chunk, peer, data->size(), *status);
               });
      break;
    }
    case ArtifactReply::kBusy: {
      d.refused[{peer, chunk}] = now + cfg_.reseed_window;
      ++stats_.busy_replies;
      // Whoever got the chunk has it (or will soon): ask there.
      if (!reply->busy.empty() && reply->busy != self_ && !d.shunned.count(reply->busy) && AddrOf(reply->busy)) {
        Peer& hint = d.peers[reply->busy];
        hint.has.resize(d.m.ChunkCount(), false);
        hint.has[chunk] = true;
      }
      break;
    }
    case ArtifactReply::kMissing:
      if (auto p = d.peers.find(peer); p != d.peers.end() && chunk < p->second.has.size()) p->second.has[chunk] = false;
      break;
    case ArtifactReply::kHave:
      break;
  }
  Pump(digest);
}

void Artifacts::ChunkWritten(const std::string& digest, uint64_t id, size_t chunk, const std::string& peer,
                             size_t bytes, const Status& s) {
  auto it = downloads_.find(digest);
  if (it == downloads_.end() || it->second.id != id) return;
  Download& d = it->second;
  d.writing.erase(chunk);
  const Time now = clock_.Now();
  if (s.code() == Status::Code::kCorruption) {
    ++stats_.corrupt_chunks;
    spdlog::warn("artifact {} ({}): chunk {} from {} does not match its digest; fetching it elsewhere and "
                 "not asking {} again for {} s",
                 d.m.name, digest, chunk, peer, peer,
                 std::chrono::duration_cast<std::chrono::seconds>(cfg_.shun_bad).count());
    d.shunned[peer] = now + cfg_.shun_bad;
    d.peers.erase(peer);
  } else if (!s.ok()) {
    spdlog::error("artifact {}: cannot write chunk {}: {}", digest, chunk, s.message());
    d.shunned[peer] = now + cfg_.shun_failed;
  } else if (!d.have[chunk]) {
    d.have[chunk] = true;
    ++d.held;
    ++stats_.chunks_fetched;
    stats_.bytes_fetched += bytes;
    d.from[peer] += bytes;
    stats_.fetched_from[peer] += bytes;
  }
  Pump(digest);
}

void Artifacts::Finish(const std::string& digest) {
  Download& d = downloads_.at(digest);
  d.finishing = true;
  auto status = std::make_shared<Status>(Status::Ok());
  offload_([this, m = d.m, status] { *status = store_.Finish(m); },
           [this, digest, id = d.id, status, alive = alive_] {
             if (!*alive) return;
             auto it = downloads_.find(digest);
             if (it == downloads_.end() || it->second.id != id) return;
             Download d = std::move(it->second);
             downloads_.erase(it);
             if (!status->ok()) {
               // Every chunk matched, so the catalog record itself is wrong
               // or the disk is: start over rather than hand it out.
               spdlog::error("artifact {} ({}): {}; fetching it again", d.m.name, digest, status->message());
               return StartDownload(d.m);
             }
             ++stats_.fetched;
             CountHeld();
             std::string from;
             for (const auto& [peer, bytes] : d.from)
               from += (from.empty() ? "" : ", ") + peer + " " + std::to_string(bytes >> 20) + " MiB";
             spdlog::info("artifact {} ({}, {} bytes) fetched and verified in {} ms (from {})", d.m.name, digest,
                          d.m.size,
                          std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now() - d.started).count(),
                          from.empty() ? "nobody: it was here already" : from);
             if (on_ready_) on_ready_();
           });
}

// Listing the store and removing files are blocking work: both go to the
// worker, and the decisions in between are made on the protocol thread.
// While a digest is being removed it counts as absent (Refresh and Need skip
// it), so nothing hands out a path that is about to vanish.
void Artifacts::CollectGarbage() {
  if (gc_running_) return;
  gc_running_ = true;
  auto listed = std::make_shared<std::pair<std::vector<std::string>, std::vector<std::string>>>();
  offload_([this, listed] { *listed = {store_.Complete(), store_.Partial()}; },
           [this, listed, alive = alive_] {
             if (!*alive) return;
             held_ = listed->first.size();
             std::set<std::string> present(listed->first.begin(), listed->first.end());
             present.insert(listed->second.begin(), listed->second.end());
             RemoveUnreferenced(present);
           });
}

void Artifacts::RemoveUnreferenced(const std::set<std::string>& present) {
  const std::set<std::string> referenced = Referenced();
  const Time now = clock_.Now();
  for (auto it = unreferenced_since_.begin(); it != unreferenced_since_.end();)
    it = present.count(it->first) && !referenced.count(it->first) ? std::next(it) : unreferenced_since_.erase(it);
  std::vector<std::string> doomed;
  for (const auto& digest : present) {
    if (referenced.count(digest) || downloads_.count(digest) || beginning_.count(digest)) continue;
    auto [it, fresh] = unreferenced_since_.emplace(digest, now);
    if (fresh || now - it->second < cfg_.gc_grace) continue;
    doomed.push_back(digest);
    removing_.insert(digest);
    unreferenced_since_.erase(it);
  }
  if (doomed.empty()) {
    gc_running_ = false;
    return;
  }
  auto results = std::make_shared<std::vector<Status>>();
  auto count = std::make_shared<size_t>(0);
  offload_(
      [this, doomed, results, count] {
        for (const auto& digest : doomed) results->push_back(store_.Remove(digest));
        *count = store_.Complete().size();
      },
      [this, doomed, results, count, alive = alive_] {
        if (!*alive) return;
        gc_running_ = false;
        held_ = *count;
        for (size_t i = 0; i < doomed.size(); ++i) {
          removing_.erase(doomed[i]);
          if (!(*results)[i].ok()) {
            spdlog::error("artifact {}: cannot remove it: {}", doomed[i], (*results)[i].message());
            continue;
          }
          ++stats_.removed;
          served_.erase(doomed[i]);
          spdlog::info("artifact {} removed from this node: no desired state has named it for {} s", doomed[i],
                       std::chrono::duration_cast<std::chrono::seconds>(cfg_.gc_grace).count());
        }
        // Named again while it was being removed: fetch it again.
        Refresh();
      });
}

std::optional<std::string> Artifacts::AddrOf(const std::string& name) const {
  const auto status = channels_.list().StatusOf(name);
  if (status != membership::MemberStatus::kAlive && status != membership::MemberStatus::kSuspect) return std::nullopt;
  return channels_.list().AddrOf(name);
}

std::string Artifacts::NameOf(const std::string& addr) const {
  std::string name;
  channels_.list().ForEachMember([&](const membership::MemberRecord& m) {
    if (name.empty() && m.addr == addr) name = m.name;
  });
  return name;
}

void Artifacts::HandleStream(const std::string& from, ByteView data, Reply reply) {
  auto req = DecodeArtifactRequest(data);
  if (!req.ok()) {
    ++stats_.bad_requests;
    spdlog::warn("artifact: a malformed request from {}: {}", from, req.status().message());
    return reply(EncodeArtifactReply(ArtifactReply{}));
  }
  Serve(from, req->digest, req->chunk, std::move(reply));
}

// Answers at once from what is in memory; a chunk's bytes are read on the
// worker and sent when they are back.
void Artifacts::Serve(const std::string& from, const std::string& digest, std::optional<uint32_t> chunk,
                      Reply respond) {
  ArtifactReply reply;
  const bool complete = store_.Has(digest);
  auto d = downloads_.find(digest);
  const bool partial = d != downloads_.end() && d->second.ready;
  if (!complete && !partial) return respond(EncodeArtifactReply(reply));  // missing
  std::optional<ArtifactManifest> m = partial ? d->second.m : CatalogEntry(replicator_.log().state(), digest);
  if (!m) return respond(EncodeArtifactReply(reply));
  if (!chunk) {
    reply.kind = ArtifactReply::kHave;
    reply.data = ToBitmap(complete ? std::vector<bool>(m->ChunkCount(), true) : d->second.have);
    return respond(EncodeArtifactReply(reply));
  }
  if (*chunk >= m->ChunkCount() || (!complete && !d->second.have[*chunk])) return respond(EncodeArtifactReply(reply));
  const std::string asker = NameOf(from);
  const Time now = clock_.Now();
  if (complete) {
    // One copy of each chunk per window from a complete holder: the rest
    // come from whoever got it, unless that one is much farther from the
    // asker than we are (another site: the copy would cross twice).
    auto& last = served_[digest][*chunk];
    if (!last.first.empty() && last.first != asker && now - last.second < cfg_.reseed_window && AddrOf(last.first) &&
        !MuchFarther(asker, last.first)) {
      reply.kind = ArtifactReply::kBusy;
      reply.busy = last.first;
      return respond(EncodeArtifactReply(reply));
    }
    last = {asker, now};
  }
  auto bytes = std::make_shared<Result<Bytes>>(Status::Internal("not run"));
  offload_([this, m = *m, index = *chunk, bytes] { *bytes = store_.ReadChunk(m, index); },
           [this, digest, index = *chunk, bytes, respond = std::move(respond), alive = alive_] {
             if (!*alive) return;
             if (!bytes->ok()) {
               spdlog::error("artifact {}: cannot read chunk {}: {}", digest, index, bytes->status().message());
               return respond(EncodeArtifactReply(ArtifactReply{}));
             }
             ArtifactReply reply;
             reply.kind = ArtifactReply::kChunk;
             reply.data = std::move(**bytes);
             ++stats_.chunks_served;
             stats_.bytes_served += reply.data.size();
             respond(EncodeArtifactReply(reply));
           });
}

void Artifacts::Add(OpenFile file, const std::string& path, const std::string& name, const std::string& version,
                    std::function<void(Result<Json>)> done) {
  if (file == nullptr)
    return done(Status::InvalidArgument(
        "add needs the file itself, opened by the client and passed over the socket (as `starling artifact add` "
        "does): starlingd never opens a path a client names"));
  std::string label = name;
  if (label.empty()) label = path.substr(path.rfind('/') + 1);
  auto result = std::make_shared<Result<ArtifactManifest>>(Status::Internal("not run"));
  offload_(
      [this, file, path, label, version, result] { *result = store_.Add(*file, path, label, version); },
      [this, path, done, result, alive = alive_] {
        if (!*alive) return;
        if (!result->ok()) return done(result->status());
        ArtifactManifest m = **result;
        const store::State& state = replicator_.log().state();
        bool fresh = false;
        if (auto known = CatalogEntry(state, m.digest)) {
          m = *known;  // the first record stands: same content, same digest
        } else {
          m.added_by = self_;
          m.added_us = clock_.WallMicros();
          auto w = replicator_.Write({store::Op{kArtifactKeyPrefix + Hex(m.digest), m.ToJson().dump()}},
                                     "artifact: add " + m.name, replicator_.log().last_hlc());
          if (!w.ok()) return done(Status(w.status().code(), "the catalog record was not stored: " + w.status().message()));
          fresh = true;
          spdlog::info("artifact {} {} ({}, {} bytes, {} chunks) added from {}", m.name, m.version, m.digest, m.size,
                       m.ChunkCount(), path);
        }
        CountHeld();
        done(Json{{"digest", m.digest},
                  {"name", m.name},
                  {"version", m.version},
                  {"size", m.size},
                  {"chunks", m.ChunkCount()},
                  {"path", store_.PathOf(m.digest)},
                  {"new", fresh}});
      });
}

void Artifacts::List(std::function<void(Result<Json>)> done) {
  struct Pending {
    Json out;
    std::map<std::string, std::set<std::string>> holders;
    size_t waiting = 0;
    std::function<void(Result<Json>)> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->done = std::move(done);
  const auto catalog = Catalog(replicator_.log().state());
  const std::set<std::string> referenced = Referenced();
  Json list = Json::array();
  for (const auto& [digest, m] : catalog) {
    const bool complete = store_.Has(digest);
    auto d = downloads_.find(digest);
    size_t chunks = complete ? m.ChunkCount() : d != downloads_.end() ? d->second.held : 0;
    if (complete) pending->holders[digest].insert(self_);
    list.push_back({{"digest", digest},
                    {"name", m.name},
                    {"version", m.version},
                    {"size", m.size},
                    {"chunks", m.ChunkCount()},
                    {"added_by", m.added_by},
                    {"added_at_us", m.added_us},
                    {"local", complete ? "complete" : d != downloads_.end() ? "partial" : "absent"},
                    {"local_chunks", chunks},
                    {"progress", Percent(chunks, m.ChunkCount())},
                    {"referenced", referenced.count(digest) > 0},
                    {"path", complete ? store_.PathOf(digest) : ""}});
  }
  pending->out = {{"node", self_},
                  {"bytes_served", stats_.bytes_served},
                  {"bytes_fetched", stats_.bytes_fetched},
                  {"corrupt_chunks", stats_.corrupt_chunks},
                  {"artifacts", std::move(list)}};
  auto finish = [pending] {
    for (auto& a : pending->out["artifacts"]) {
      const auto& h = pending->holders[a["digest"].get<std::string>()];
      a["holders"] = std::vector<std::string>(h.begin(), h.end());
    }
    pending->done(pending->out);
  };
  // Ask every live member which artifacts it holds complete.
  for (const auto& member : channels_.list().Members()) {
    if (member.name == self_ || member.status != membership::MemberStatus::kAlive) continue;
    for (const auto& [digest, m] : catalog) {
      ++pending->waiting;
      channels_.SendStream(membership::Channel::kArtifacts, member.addr, EncodeArtifactRequest(digest, std::nullopt),
                           kListTimeout,
                           [pending, finish, digest = digest, n = m.ChunkCount(), name = member.name](Result<Bytes> r) {
                             if (r.ok()) {
                               auto reply = DecodeArtifactReply(*r);
                               if (reply.ok() && reply->kind == ArtifactReply::kHave) {
                                 auto bits = FromBitmap(reply->data, n);
                                 if (!reply->data.empty() && std::all_of(bits.begin(), bits.end(), [](bool b) { return b; }))
                                   pending->holders[digest].insert(name);
                               }
                             }
                             if (--pending->waiting == 0) finish();
                           });
    }
  }
  if (pending->waiting == 0) finish();
}

}  // namespace starling::node
