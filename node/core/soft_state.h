// Per-node soft state: each node gossips a report about itself (the revision
// it has applied, whether it is healthy, its rollout phase, its services'
// outputs), and every node keeps the newest report of every other.
//
// * Written only by the node it describes: a report is taken only when it
//   arrives from the address membership lists for the node it names (user
//   broadcasts are sent only by the node that queued them, never relayed).
// * Versions are generation << 32 | counter, so a restarted node's reports
//   outrank those of its previous run.
// * Spread at once on change (a broadcast, and straight to the coordinator:
//   AlsoTell, which judges rollouts on it). Refreshed every `refresh`
//   straight to the coordinator and to the next few members in name order
//   (a cursor through the list), not through the broadcast queue: what a
//   node sends per refresh does not grow with the cluster, a node joining
//   later still learns every report, and the coordinator hears every node
//   every refresh.
// Single-threaded on the protocol thread.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "starling/atom.h"
#include "starling/env.h"
#include "starling/membership/config.h"
#include "starling/status.h"

namespace starling::membership {
class UserChannels;
}

namespace starling::node {

// Every node holds every other's report: the texts are interned
// (starling/atom.h), so a report costs its holder a few handles, and the
// revisions, phases and outputs it shares with others are kept once.
struct NodeReport {
  Atom name;
  uint64_t version = 0;
  Atom applied_revision;
  bool healthy = false;
  Atom phase = "idle";
  membership::TagSet outputs;
  Atom detail;
  Atom target;  // the revision it is working on, or failed on
  // Passing health checks in this generation, counted by Confirm without a
  // new version: a refresh repeats the count, only a new check raises it.
  uint64_t checks = 0;
  bool counts_checks = true;  // false from daemons that predate `checks`
  bool operator==(const NodeReport&) const = default;
};

Bytes EncodeReport(const NodeReport& r);
// Never throws; kCorruption says why.
Result<NodeReport> DecodeReport(ByteView bytes);

class SoftState {
 public:
  // `channels` must outlive this; `generation` is the daemon's start count.
  SoftState(std::string self, uint32_t generation, Clock& clock, membership::UserChannels& channels,
            Duration refresh = std::chrono::seconds(10));
  ~SoftState();
  SoftState(const SoftState&) = delete;
  SoftState& operator=(const SoftState&) = delete;

  void Start();
  // Where every spread of this node's report also goes straight to (the
  // coordinator's address, when another node holds the lease). Broadcasts
  // go to a few random peers and are not relayed, so in a small cluster
  // with a dead member among the gossip targets a report can miss the one
  // node that judges it for several refreshes, and a healthy node of a
  // batch then misses its deadline.
  // Several addresses when the holder is not known (the voters, one of whom
  // will hold the lease).
  void AlsoTell(std::function<std::vector<std::string>()> addrs) { also_tell_ = std::move(addrs); }
  // Whether this node is where the others' AlsoTell sends (the holder, or a
  // voter while none is known): it hears every node every refresh.
  void ToldDirectly(std::function<bool()> is) { told_directly_ = std::move(is); }
  // Members a refresh goes to besides the coordinator.
  static constexpr size_t kRefreshPeers = 3;
  // A health check passed: counts it in the report (no new version) and
  // sends the report to the AlsoTell addresses only, so that the
  // coordinator counts a batch node done on a check from after min_healthy
  // (RolloutPlanner::Done), not on a refresh of an old word.
  void Confirm();
  // When a report of `name` last arrived with a higher check count than
  // before in the same generation; for this node, when it last confirmed.
  std::optional<Time> CheckedAt(const std::string& name) const;
  // Changes this node's report and spreads it.
  void Update(const std::function<void(NodeReport&)>& edit);
  const NodeReport& local() const { return local_; }
  std::optional<NodeReport> Get(const std::string& name) const;
  // When a report of `name` (its newest, or a refresh of it) last arrived;
  // now for this node itself, nullopt when none has.
  std::optional<Time> HeardAt(const std::string& name) const;
  // Whether `name`'s report has been heard recently enough: a node that
  // stopped reporting (killed, cut off) is not judged on its last word.
  // Where every refresh arrives (ToldDirectly), within six refresh periods;
  // elsewhere a refresh arrives once per turn of the others' cursors
  // (alive / kRefreshPeers refreshes), so within two turns and six periods.
  bool Fresh(const std::string& name) const;
  // A service output ("service.output") from this node's or any peer's report.
  std::optional<std::string> FindOutput(const std::string& key) const;
  uint64_t rejected() const { return rejected_; }
  // Grows with every new report held (this node's or a peer's): whoever
  // shows the reports (the console's event stream) sees a change by it.
  uint64_t changes() const { return changes_; }

  void HandlePacket(const std::string& from, ByteView data);
  // Drops what is held about a member that is gone for good (reaped).
  void Forget(const std::string& name);

 private:
  void Spread();
  void Refresh();

  Clock& clock_;
  membership::UserChannels& channels_;
  Duration refresh_;
  NodeReport local_;
  // What is held about one other node, in one record: at 10,000 nodes every
  // node holds 10,000 of them, and four maps by name cost four tree nodes
  // and four copies of the name each.
  // What a report says besides whose it is: every node holds one of every
  // other node's, and the holders of a node's report hold the same, so
  // every holder keeps it once (in the simulator, one process); the texts
  // in it are shared across nodes besides (most say the same revision,
  // idle, healthy).
  struct Body {
    uint64_t version = 0;
    uint64_t checks = 0;  // the baseline: it rises without a new version
    Atom applied_revision;
    Atom phase;
    membership::TagSet outputs;
    Atom detail;
    Atom target;
    bool healthy = false;
    bool counts_checks = true;
    bool operator==(const Body&) const = default;
  };
  struct BodyHash {
    size_t operator()(const Body& b) const;
  };
  using BodyHandle = intern::Interned<Body, BodyHash>;
  struct Peer {
    BodyHandle body;
    Time heard{};  // its newest report, or a refresh of it, last arrived
    // Its check count last rose within a generation; kNever: not yet (a
    // time, not an optional: every node holds one per node).
    Time checked = kNever;
    static constexpr Time kNever = Time::min();
    NodeReport Report(const Atom& name) const;
  };
  static BodyHandle BodyOf(const NodeReport& r, uint64_t checks);
  std::map<Atom, Peer, std::less<>> peers_;
  std::optional<Time> local_checked_;
  uint64_t rejected_ = 0;
  uint64_t changes_ = 0;
  Clock::TimerId timer_ = 0;
  std::function<std::vector<std::string>()> also_tell_;
  std::function<bool()> told_directly_;
  std::string cursor_;  // the last member a refresh went to
};

}  // namespace starling::node
