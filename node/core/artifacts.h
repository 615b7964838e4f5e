// Artifacts: package files that reach every node without a central
// repository.
//
// Where things live
//  * The catalog is in the desired-state log: one control record
//    `~artifact/<hex>` per artifact (its ArtifactManifest: name, version,
//    size, the SHA-256 of the whole and of every 1 MiB chunk), written by the
//    node the operator added it on. Replicated like the desired state, not
//    part of its revision; a package names an artifact by digest and `apply`
//    refuses a digest the catalog does not hold.
//  * Content is in each node's data dir (ArtifactStore), addressed by digest.
//
// Fetching. A node wants the artifacts of the packages it is to run (its
// NodeSpec of the current desired state) and whatever its agent asks for.
// For each it asks peers which chunks they hold (a random few each round,
// plus the node that added it), then keeps several chunk requests in flight
// to several peers: rarest chunk first, from a peer that is not the origin
// when one has it. Every chunk is checked against the catalog's chunk digest
// before it is written: a peer that serves a bad one is shunned and the
// chunk is fetched elsewhere. Chunks survive restarts (the partial file is
// re-checked on start), and the whole is checked against the digest before
// it is handed to the install hook. Nodes serve the chunks they hold while
// they are still fetching, so finished and unfinished nodes are all sources.
//
// Serving. A node holding an artifact complete serves a given chunk to one
// peer per `reseed_window`; a second asker in that window is told "busy" and
// who got it, and fetches it from there. That spreads the first copies over
// the fetchers instead of making the origin serve every node everything.
//
// Garbage collection. An artifact no package of the current desired state
// (or of the rollout's target or revert revision) names is removed from the
// data dir once it has stayed unreferenced for `gc_grace`.
//
// Single-threaded on the protocol thread, except the file work handed to
// `Offload` (every store call that reads or writes content or lists files), which runs elsewhere and comes
// back on the protocol thread.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent.h"
#include "artifact_store.h"
#include "starling/membership/user_channels.h"
#include "starling/store/replicator.h"

namespace starling::node {

inline constexpr const char* kArtifactKeyPrefix = "~artifact/";

struct ArtifactConfig {
  Duration query_every = std::chrono::seconds(1);  // while fetching: ask peers what they hold
  size_t query_peers = 6;                          // peers asked per round, besides the origin
  size_t max_in_flight = 4;                        // chunk requests at once, per artifact
  size_t per_peer = 2;                             // of those, to one peer
  Duration chunk_timeout = std::chrono::seconds(20);
  Duration shun_bad = std::chrono::minutes(10);    // a peer that served a corrupt chunk
  Duration shun_failed = std::chrono::seconds(3);  // a peer that did not answer
  Duration reseed_window = std::chrono::seconds(10);
  Duration gc_grace = std::chrono::hours(1);
  Duration gc_every = std::chrono::minutes(1);
  Duration tick = std::chrono::milliseconds(250);
};

// Runs `work` off the protocol thread, then `done` back on it.
using Offload = std::function<void(std::function<void()> work, std::function<void()> done)>;

// The peer protocol (schema/artifact.capnp). Decoders take untrusted bytes:
// they never throw, and kCorruption says what is wrong.
struct ArtifactRequest {
  std::string digest;
  std::optional<uint32_t> chunk;  // none: which chunks do you hold?
  bool operator==(const ArtifactRequest&) const = default;
};
struct ArtifactReply {
  enum Kind { kHave, kChunk, kBusy, kMissing } kind = kMissing;
  Bytes data;        // have: bitmap, bit i (LSB first) = chunk i; chunk: its bytes
  std::string busy;  // who got the chunk from us lately (may be empty)
  bool operator==(const ArtifactReply&) const = default;
};
Bytes EncodeArtifactRequest(const std::string& digest, std::optional<uint32_t> chunk);
Result<ArtifactRequest> DecodeArtifactRequest(ByteView bytes);
Bytes EncodeArtifactReply(const ArtifactReply& reply);
Result<ArtifactReply> DecodeArtifactReply(ByteView bytes);

// The catalog record of `digest` in `state`, when present and readable.
std::optional<ArtifactManifest> CatalogEntry(const store::State& state, const std::string& digest);
// Every readable catalog record, by digest.
std::map<std::string, ArtifactManifest> Catalog(const store::State& state);
// Digests named by packages of `doc` that the catalog lacks, as
// "packages.<name>.artifact: unknown artifact <digest> ..." problems.
std::vector<std::string> UnknownArtifacts(const store::Json& doc, const store::State& state);

class Artifacts final : public ArtifactSource {
 public:
  struct Stats {
    uint64_t bytes_served = 0, chunks_served = 0, busy_replies = 0;
    uint64_t bytes_fetched = 0, chunks_fetched = 0, corrupt_chunks = 0;
    uint64_t bad_requests = 0, fetched = 0, removed = 0;
    uint64_t corrupt_copies = 0;  // this node's complete copies found changed before an install
    std::map<std::string, uint64_t> fetched_from;  // bytes fetched per peer, every download together
  };

  // `roles_tag` gives this node's `roles` membership tag. References must
  // outlive this.
  Artifacts(std::string self, Clock& clock, Random& random, membership::UserChannels& channels,
            store::Replicator& replicator, ArtifactStore& store, Offload offload,
            std::function<std::string()> roles_tag, ArtifactConfig config = {});
  ~Artifacts() override;
  Artifacts(const Artifacts&) = delete;
  Artifacts& operator=(const Artifacts&) = delete;

  void Start();
  // Looks for artifacts to fetch; call after every change to the log.
  void Refresh();
  // Called when an artifact has been fetched and verified.
  void OnReady(std::function<void()> fn) { on_ready_ = std::move(fn); }

  // `artifact add`: copies `file` (opened by the client) into the store and
  // records it in the catalog; `path` is the file as the client named it, for
  // messages and the default name. Answers {"digest", "name", "version",
  // "size", "chunks", "path", "new"}.
  void Add(OpenFile file, const std::string& path, const std::string& name, const std::string& version,
           std::function<void(Result<store::Json>)> done);
  // `artifact ls`: the catalog with this node's copy of each and, from
  // asking every live member, which members hold it complete. Answers
  // {"node", "bytes_served", "bytes_fetched", "corrupt_chunks", "artifacts": [{"digest", "name", "version",
  // "size", "chunks", "added_by", "added_at", "local": complete|partial|absent, "local_chunks",
  // "referenced", "path", "holders": [...]}]}.
  void List(std::function<void(Result<store::Json>)> done);

  // The path only once the copy was hashed again since the last time it was
  // handed out: an install hook never gets a copy changed on this disk. A
  // changed one is removed and fetched again.
  std::optional<std::string> Need(const std::string& digest, std::string* progress) override;
  const Stats& stats() const { return stats_; }
  // Artifacts held complete, as last counted on the worker (at start, after
  // each fetch, add and collection): reading it touches no file.
  size_t held() const { return held_; }
  // Stream requests from peers (Channel::kArtifacts).
  // Where a stream request's reply goes (once, on the protocol thread).
  using Reply = std::function<void(Bytes)>;
  void HandleStream(const std::string& from, ByteView data, Reply reply);

 private:
  struct Peer {
    std::vector<bool> has;
    size_t in_flight = 0;
  };
  struct Download {
    ArtifactManifest m;
    uint64_t id = 0;  // tells replies for an earlier download of the same digest apart
    bool ready = false, finishing = false;
    std::vector<bool> have;
    size_t held = 0;
    std::map<std::string, Peer> peers;  // by member name
    std::map<std::string, Time> shunned;
    std::map<size_t, std::string> in_flight;  // chunk -> peer
    std::set<size_t> writing;                  // chunks received, being checked and written off-thread
    std::map<std::pair<std::string, size_t>, Time> refused;
    std::map<std::string, uint64_t> from;  // bytes per peer
    Time next_query{};
    Time started{};
  };

  void Tick();
  void StartDownload(const ArtifactManifest& m);
  void Pump(const std::string& digest);
  void Query(Download& d);
  void RequestChunk(Download& d, size_t chunk, const std::string& peer);
  void OnChunk(const std::string& digest, uint64_t id, size_t chunk, const std::string& peer, Result<Bytes> reply);
  // Back on the protocol thread after WriteChunk: counts the chunk, or shuns the peer that sent a bad one.
  void ChunkWritten(const std::string& digest, uint64_t id, size_t chunk, const std::string& peer, size_t bytes,
                    const Status& s);
  void Finish(const std::string& digest);
  void CheckLocalCopy(const std::string& digest);
  void CountHeld();
  void CollectGarbage();
  void RemoveUnreferenced(const std::set<std::string>& present);
  std::set<std::string> Wanted() const;
  std::set<std::string> Referenced() const;
  std::optional<std::string> AddrOf(const std::string& name) const;
  // The round trip to `name` the network coordinates estimate; none when
  // either coordinate is unknown yet.
  std::optional<Duration> RttTo(const std::string& name) const;
  // Of `names`, the one nearest by RttTo; a random one among those with no
  // estimate when none has one.
  std::string Nearest(const std::vector<std::string>& names);
  // Whether `other` is more than twice as far from `asker` as this node is.
  bool MuchFarther(const std::string& asker, const std::string& other) const;
  std::string NameOf(const std::string& addr) const;
  void Serve(const std::string& from, const std::string& digest, std::optional<uint32_t> chunk, Reply respond);

  std::string self_;
  Clock& clock_;
  Random& random_;
  membership::UserChannels& channels_;
  store::Replicator& replicator_;
  ArtifactStore& store_;
  Offload offload_;
  std::function<std::string()> roles_tag_;
  ArtifactConfig cfg_;
  std::function<void()> on_ready_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  std::map<std::string, Download> downloads_;
  std::set<std::string> needed_;  // asked for by the agent
  std::set<std::string> beginning_;  // Begin() running off-thread
  std::set<std::string> checking_;   // Verify() of a complete copy running off-thread
  std::set<std::string> checked_;    // verified, not yet handed out
  // What this node served, per digest and chunk: to whom and when (the reseed rule).
  std::map<std::string, std::map<size_t, std::pair<std::string, Time>>> served_;
  std::map<std::string, Time> unreferenced_since_;
  std::set<std::string> removing_;  // Remove() running off-thread
  bool gc_running_ = false;
  size_t held_ = 0;
  uint64_t next_id_ = 1;
  Time last_gc_{};
  Stats stats_;
  Clock::TimerId timer_ = 0;
};

}  // namespace starling::node
