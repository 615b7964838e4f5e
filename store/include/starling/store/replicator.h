// Replicator: spreads the desired-state log to every node.
//
// Two paths:
//  * Rumour: a new entry (written here or first heard from a peer) is queued
//    as a gossip broadcast when it fits the datagram budget; a larger one is
//    announced instead and whoever lacks it asks the announcer by stream.
//    The first time a node has a new entry it also sends it at once to a few
//    random peers (eager push), so a change crosses the cluster in a few
//    network hops instead of a few gossip ticks; the broadcasts repair what
//    the eager push loses.
//  * Anti-entropy: every sync interval, an exchange with one random live
//    peer over the stream transport. Each side states its per-origin
//    high-water marks; each ships what the other lacks, in batches, and a
//    peer behind our compaction gets our snapshot plus the tail.
// In a small cluster every node remembers the high-water marks its peers
// last stated; once the retained log is long, the prefix every live peer has
// acknowledged is folded into the snapshot. Whatever is older than
// fold_after folds in a cluster of any size.
//
// Contract: single-threaded on the protocol thread, driven by the injected
// Clock and Random and the LogGossip seam (no sockets, no OS clock). Bytes
// from peers are untrusted: a bad message costs a counter and a log line.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "starling/env.h"
#include "starling/store/log.h"

namespace starling::store {

using namespace std::chrono_literals;

struct ReplicatorConfig {
  Duration sync_interval = 5s;
  Duration stream_timeout = 10s;
  size_t batch_bytes = 1 << 20;  // entries per anti-entropy reply
  size_t compact_after = 10000;  // retained entries before folding is tried
  // Entries stamped longer ago than this fold without waiting for every
  // live peer to state that it has them: at scale a node hears from every
  // peer only after hours. By then rumour and anti-entropy have carried an
  // entry to every node that was up; one that was away gets the snapshot.
  // Folding rewrites the snapshot, so it waits until the entries come to
  // fold_bytes and a quarter of the snapshot, or to fold_entries.
  Duration fold_after = 60s;
  // The age cut falls on a multiple of this: nodes that fold in the same
  // window fold the same entries and end with equal snapshots (which a
  // process holding many nodes keeps once, see SnapshotRegisters).
  Duration fold_align = 10s;
  size_t fold_bytes = 16 << 10;
  size_t fold_entries = 256;
  int eager_fanout = 3;          // peers a new entry is pushed to at once
  // The prefix every live peer has acknowledged folds only while there are
  // at most this many: with more, a node hears from every peer only after
  // hours, and what each one stated would be held for nothing (folding by
  // age does the work).
  size_t acked_fold_peers = 128;
};

// What the replicator needs from membership.
class LogGossip {
 public:
  struct Peer {
    std::string name, addr;
  };
  virtual ~LogGossip() = default;
  virtual std::vector<Peer> LivePeers() const = 0;  // alive members other than ourselves
  virtual size_t NumLivePeers() const { return LivePeers().size(); }
  // Up to k distinct ones at random, without listing them all.
  virtual std::vector<Peer> RandomLivePeers(size_t k, Random& random) const {
    auto peers = LivePeers();
    // A partial Fisher-Yates shuffle picks distinct peers.
    k = std::min(k, peers.size());
    for (size_t i = 0; i < k; ++i) std::swap(peers[i], peers[i + random.Uniform(peers.size() - i)]);
    peers.resize(k);
    return peers;
  }
  // One of them by name or by address, without listing them all.
  virtual std::optional<Peer> LivePeer(const std::string& name) const {
    for (auto& p : LivePeers())
      if (p.name == name) return p;
    return std::nullopt;
  }
  virtual std::string NameAt(const std::string& addr) const {
    for (auto& p : LivePeers())
      if (p.addr == addr) return p.name;
    return "";
  }
  virtual std::string SelfAddr() const = 0;
  virtual size_t BroadcastBudget() const = 0;
  virtual void Broadcast(const std::string& key, Bytes data) = 0;
  virtual void SendPacket(const std::string& addr, Bytes data) = 0;
  virtual void SendStream(const std::string& addr, Bytes data, Duration timeout, Transport::StreamDone done) = 0;
};

class Replicator {
 public:
  // The references must outlive the Replicator.
  Replicator(DesiredLog& log, LogGossip& gossip, Clock& clock, Random& random, ReplicatorConfig config = {});
  ~Replicator();
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  // Starts the anti-entropy timer.
  void Start();

  void HandlePacket(const std::string& from, ByteView data);
  Bytes HandleStream(const std::string& from, ByteView data);

  // A local change: durable, then spread.
  Result<Entry> Write(std::vector<Op> ops, std::string note, Hlc base);
  // One anti-entropy exchange with `addr` now (e.g. right after a join).
  void SyncWith(const std::string& addr);

  // Runs after every change to the log (local or from a peer).
  void OnChange(std::function<void()> fn) { on_change_ = std::move(fn); }

  DesiredLog& log() { return log_; }
  const std::map<std::string, uint64_t>& counters() const { return counters_; }

 private:
  void Tick();
  void Spread(const Entry& e, bool eager);
  void Changed();
  void HandleReply(const std::string& addr, const std::string& name, ByteView data, int round);
  void Exchange(const std::string& addr, const std::string& name, std::vector<Entry> push, int round);
  void MaybeCompact();
  std::string NameOf(const std::string& addr) const;
  bool IngestAll(const std::vector<Entry>& entries, const char* counter);
  void Bad(const std::string& from, const Status& s);

  DesiredLog& log_;
  LogGossip& gossip_;
  Clock& clock_;
  Random& random_;
  ReplicatorConfig cfg_;
  std::function<void()> on_change_;
  Clock::TimerId timer_ = 0;
  std::shared_ptr<bool> token_;
  std::map<std::string, HighWater> peer_have_;  // by member name
  // Whether peer_have_ is kept (at most acked_fold_peers live peers):
  // judged once per tick, as counting the members walks the list.
  bool tracks_peers_ = true;
  std::map<std::string, int> in_flight_;        // exchanges per address
  std::map<std::string, uint64_t> counters_;
};

}  // namespace starling::store
