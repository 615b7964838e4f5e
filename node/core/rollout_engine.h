// The rollout engine: on the lease holder, moves the rollout forward
// (RolloutPlanner) and writes the record; on every node, answers `rollout`
// commands. See rollout.h for the records and their rules.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lease.h"
#include "rollout.h"
#include "soft_state.h"
#include "starling/membership/memberlist.h"
#include "starling/store/replicator.h"

namespace starling::node {

// What the planner and `rollout status` know about every node: the members
// and every node the desired state names.
std::vector<NodeView> BuildViews(const store::Json& doc, const membership::Memberlist& members,
                                 const SoftState& soft);

// Whether a node that applied one revision would change anything by applying
// another: it compares the packages and services each revision gives the
// node (with the roles each gives it), so a revision that changed only the
// freeze, the voters or other nodes leaves it where it is. For one step:
// it keeps the documents it has read.
// In an agent rollout (`agent`) it compares the `agent` section too, and a
// node runs it only once membership says it runs that release; otherwise the
// section is left out, as nodes keep their binary.
class ContentMatch {
 public:
  explicit ContentMatch(const store::DesiredLog& log, bool agent = false) : log_(log), agent_(agent) {}
  bool operator()(const NodeView& v, const std::string& revision);

 private:
  const store::Json* Doc(const std::string& id);
  const store::DesiredLog& log_;
  bool agent_;
  std::map<std::string, std::optional<store::Json>> docs_;
};

// `rollout status` as JSON: state (idle when there has never been a
// rollout), revision, from, reverting, batch, batch_no (from 1 in each
// rollout), reason, and per node its phase, applied revision, health (as
// the gate counts it) and agent phase.
store::Json RolloutStatus(const store::DesiredLog& log, const membership::Memberlist& members, const SoftState& soft);

struct EngineConfig {
  Duration tick = std::chrono::milliseconds(500);
};

class RolloutEngine {
 public:
  RolloutEngine(std::string self, Clock& clock, membership::Memberlist& members, store::Replicator& replicator,
                const SoftState& soft, Lease& lease, EngineConfig config = {});
  ~RolloutEngine();
  RolloutEngine(const RolloutEngine&) = delete;
  RolloutEngine& operator=(const RolloutEngine&) = delete;

  void Start();
  // Runs a step now (after a change to the log or to a report).
  void Poke();
  // Sees every record the holder writes, with the one before and the views
  // the planner decided on: how the simulator checks the planner's promises.
  using Observer = std::function<void(const std::optional<RolloutRecord>& before, const RolloutRecord& written,
                                      const std::vector<NodeView>& views)>;
  void Observe(Observer observer) { observer_ = std::move(observer); }

 private:
  void Tick();
  void Step();
  void AutoUpgrade(const store::State& st, const std::optional<RolloutRecord>& record,
                   const std::optional<RolloutRequest>& request);

  std::string self_;
  Clock& clock_;
  membership::Memberlist& members_;
  store::Replicator& replicator_;
  const SoftState& soft_;
  Lease& lease_;
  EngineConfig cfg_;
  RolloutPlanner planner_;
  // The record with the highest ballot seen: a lower one is a deposed
  // holder's late write, which the holder puts right.
  // The highest-ballot record seen: shared with every reader of the same
  // write (every node follows the record naming every node).
  std::shared_ptr<const RolloutRecord> best_;
  RecordReader<RolloutRecord> record_{kRolloutKey};
  uint64_t out_of_reach_ = 0;  // the out-of-reach ballot last warned about
  bool was_holder_ = false;
  bool stepping_ = false;
  Observer observer_;
  Clock::TimerId timer_ = 0;
};

// Operator commands; any node may run them. Refused (kConflict, kInvalidArgument)
// with a message that says why.
// Asks for a rollout of `revision` (the current one when empty).
// An agent rollout and an application rollout wait for each other: asked
// for while the other kind runs, it is taken once that settles ("waits_for"
// in the reply); asked for while its own kind runs, it is refused.
// `only` and `batch` are RolloutRequest's: the nodes it may move (empty:
// all) and a batch size instead of the policy's (null: the policy's).
Result<store::Json> RequestRollout(store::Replicator& replicator, const std::string& revision,
                                   const std::string& by, bool agent = false,
                                   const std::vector<std::string>& only = {}, const store::Json& batch = nullptr);
struct RolloutStart {
  std::string revision;  // empty: the current one
  std::string by;
  bool yes = false;      // goes ahead with a revision that is not the current one
  bool dry_run = false;  // only says what the start would do
  bool agent = false;    // an agent rollout (RolloutRecord::agent)
  std::vector<std::string> only;  // commissioned nodes to move, the rest kept; empty: all
  store::Json batch;              // a batch size instead of the policy's; null: the policy's
};
// The same with the checks an operator at a terminal needs: a revision that
// is not the current one is refused (kConflict, the changes it would make
// listed) unless `yes`. With `dry_run`, nothing is written and the reply is
// the plan: {"dry_run", "revision", "current", "diff": [{path, kind, before,
// after}], "batches": [[names]], "unchanged": [names], "down": [names]},
// the batches as the policy cuts them if every node stays in service.
// A name in `only` that is not a commissioned member is refused by name.
Result<store::Json> RequestRollout(store::Replicator& replicator, const RolloutStart& start,
                                   const std::vector<NodeView>& views);
// pause | resume | abort of the rollout in progress.
Result<store::Json> ControlRollout(store::Replicator& replicator, const std::string& action, const std::string& by);

}  // namespace starling::node
