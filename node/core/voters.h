// The lease's voter set: read from the desired state (`voters`), chosen
// automatically when nobody named it, and kept alive as voters die.
//
// Rules (documented in README "Coordinator lease"):
//  * Choice: the members alive in this node's view, by name; the first 5
//    when there are at least 5, the first 3 when at least 3, all otherwise.
//    It is made once, by the lowest-named alive member after the member set
//    has been stable for `settle` (a node that was given seeds waits until
//    it has seen another member alive), and recorded in the desired state, which
//    from then on is the only source of truth (views differ; the log
//    converges).
//  * Replacement, one voter per change and at most one change per `spacing`
//    so that every pair of consecutive sets has overlapping majorities: the
//    lease holder removes a voter dead (failed, left or gone) for longer than
//    the reap timeout, and adds the lowest-named alive member that is no
//    voter and not decommissioned while the set is smaller than the choice
//    rule asks for (after a reap, a decommission, or as the cluster grows).
//    A set the operator gave (apply, `voters --force-set`) keeps its size
//    until the lease changes it. Decommissioned members are never chosen.
//  * Merge: two voter histories that never saw each other (a node that ran
//    alone, joined later) are decided by VoterRank (state_commands.h): the
//    longer voter history, then the operator's set, then the longer log.
//    With no holder, the
//    lowest-named live voter may remove a voter dead past the reap timeout
//    (a dead voter cannot vote, so this cannot split the live majority);
//    that is how a cluster losing voters one by one shrinks to one node.
//  * The lease holder also commissions newly discovered members while the
//    `auto_commission` switch is on (not while frozen).
//  * Losing a majority at once needs the operator: `starling voters
//    --force-set a,b,...` writes the set as given.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lease.h"
#include "starling/membership/memberlist.h"
#include "starling/store/replicator.h"

namespace starling::node {

struct VoterConfig {
  Duration tick = 1s;
  Duration settle = 5s;
  Duration spacing = 10s;
  Duration reap_timeout = std::chrono::hours(24);
  // Started with nobody to join (no --join, no members remembered): it may
  // found a cluster and choose its voters alone. A node given seeds chooses
  // only once it has seen another member alive, so that a node started with
  // a wrong --join never makes itself a cluster of one with its own lease.
  bool founder = true;
};

class VoterKeeper {
 public:
  VoterKeeper(std::string self, Clock& clock, membership::Memberlist& members, store::Replicator& replicator,
              Lease& lease, VoterConfig config);
  ~VoterKeeper();
  VoterKeeper(const VoterKeeper&) = delete;
  VoterKeeper& operator=(const VoterKeeper&) = delete;

  void Start();
  // Hands the desired state's voter set to the lease; call after every
  // change to the log.
  void Refresh();

  static std::vector<std::string> Choose(std::vector<std::string> alive);
  // The recorded set, when the desired state has a valid one.
  static std::optional<std::vector<std::string>> Recorded(const store::Json& doc);

 private:
  void Tick();
  // With the auto_commission switch on, the holder commissions alive members
  // the desired state does not name yet (one change per tick); whether it wrote.
  bool AutoCommission(const store::Json& doc, const std::vector<std::string>& alive);

  std::string self_;
  Clock& clock_;
  membership::Memberlist& members_;
  store::Replicator& replicator_;
  Lease& lease_;
  VoterConfig cfg_;
  // Whether the alive members changed since the last tick: a digest of
  // their names, not the names (every node would hold one per member).
  uint64_t alive_digest_ = 0;
  Time stable_since_{};
  std::optional<Time> last_write_;
  std::map<std::string, Time> dead_since_;
  bool met_others_ = false;  // has seen another member alive
  // A tick that found nothing to do and nothing to wait for leaves the
  // next ones idle until the member list, the desired state or the lease
  // changes: a large cluster's list and document are not re-read every tick.
  struct Seen {
    uint64_t epoch = 0;
    std::string digest;
    bool holder = false;
    bool operator==(const Seen&) const = default;
  };
  std::optional<Seen> idle_at_;
  bool said_waiting_ = false;
  Clock::TimerId timer_ = 0;
};

}  // namespace starling::node
