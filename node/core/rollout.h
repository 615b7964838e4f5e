// Rollouts: the record the lease holder keeps in the desired-state log, the
// policy it follows, and the planner that moves a rollout forward.
//
// Where things live
//  * `~rollout` (a control record: replicated like the desired state, not
//    part of its revision) is written only by the lease holder and carries
//    its ballot. It names the target revision, the revision to revert to,
//    the state, the current batch and every node's assignment. A node acts
//    on its own assignment only while it is in the current batch and the
//    record's ballot is at least every ballot it has seen on a record, so a
//    deposed holder's late write moves nobody.
//  * `~rollout-request` (`rollout start`, or the holder itself when
//    auto-upgrade is on) and `~rollout-control` (pause, resume, abort) are
//    written by any node; the holder picks them up. One writer per record
//    means last-writer-wins never loses progress.
//  * Per node, the planner reads the node's own gossiped report (applied
//    revision, health, phase): a node is done with a revision when it
//    reports it applied and healthy. So a new holder resumes where the old
//    one stopped: finished nodes report the target and are not touched
//    again, and the nodes of the recorded batch stay the batch.
//
// Safety: a batch starts only when every node of the previous one is done
// (it applied the revision and, on a fresh report while membership says it
// is alive, has been healthy for `min_healthy`) or failed; so at most one
// batch of nodes is ever between stop and healthy because of the rollout.
// A node of the batch that goes down holds the next batch back until it is
// back and healthy, or until the node deadline, when it counts as failed (a
// node that stays down after its stop may be the new revision's doing).
// Nodes out of service for other reasons (busy verifying after a restart,
// unhealthy, suspect, or on a stale report) take room in the next batch;
// moving one is free only when its own fresh report says it is out. Nodes
// down before they were batched are not batched: the rollout ends
// `incomplete` with them off the revision, and catch-up brings them to it
// when they are back (the rollout then turns `succeeded`). Nodes that left
// on purpose are neither batched nor waited for.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "starling/atom.h"
#include "starling/env.h"
#include "starling/status.h"
#include "starling/store/document.h"
#include "starling/store/log.h"

namespace starling::node {

inline constexpr const char* kRolloutKey = "~rollout";
inline constexpr const char* kRolloutRequestKey = "~rollout-request";
inline constexpr const char* kRolloutControlKey = "~rollout-control";
// Notes of the entries that write rollout records start with this.
inline constexpr const char* kRolloutNote = "rollout:";

struct RolloutPolicy {
  store::Json batch = 1;  // a count, "N%", or a ramp list whose last step repeats
  std::vector<std::string> role_order;
  bool health_gate = true;
  Duration min_healthy = std::chrono::seconds(0);
  Duration node_deadline = std::chrono::minutes(5);
  Duration progress_deadline = std::chrono::hours(1);
  uint64_t failure_threshold = 0;  // failed nodes tolerated; one more stops the rollout
  bool auto_revert = true;

  // From the document's `policy` (defaults for what it leaves out).
  static RolloutPolicy From(const store::Json& doc);
  // The size of batch number `index` (0-based) out of `total` nodes: at
  // least 1, at most `total`.
  size_t BatchSize(size_t index, size_t total) const;
  // The largest batch the policy can make: the bound on nodes in flight.
  size_t MaxBatch(size_t total) const;
};

struct Assignment {
  Atom revision;  // interned: a record names one or two revisions for every node
  uint64_t batch = 0;
  bool done = false;  // the holder saw it applied and healthy
  bool operator==(const Assignment&) const = default;
};

// Whether a rollout for `only` (empty: every node) may move `name`.
inline bool MovesNode(const std::vector<std::string>& only, const std::string& name) {
  return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
}

struct RolloutRecord {
  uint64_t id = 0;
  std::string revision;  // the target
  std::string from;      // the last revision healthy on every node: the revert target
  // running | paused | succeeded | incomplete | failed | reverted; incomplete:
  // ran to the end with nodes left off the revision (down or failed), and
  // turns succeeded once catch-up brings them.
  std::string state;
  bool reverting = false;
  uint64_t ballot = 0;
  // Grows with every batch, across rollouts: the fencing sequence of
  // assignments. Operators see `batches` (1 for a rollout's first batch).
  uint64_t batch_no = 0;
  uint64_t batches = 0;     // batches this rollout has started (the ramp index)
  std::vector<std::string> batch;  // the nodes of the current batch
  std::map<std::string, Assignment> nodes;
  std::set<std::string> failed;
  int64_t started_us = 0;  // wall time
  int64_t ended_us = 0;
  std::string reason;  // why it failed, reverted or paused
  std::string by;      // who asked for it
  uint64_t control = 0;  // the last control request taken
  // An agent rollout (`starling agent upgrade`): nodes move their starlingd
  // to the revision's `agent` section, and nothing else. In any other
  // rollout they keep the binary they run.
  bool agent = false;
  // The nodes this rollout may move (the console's "approve for these
  // nodes"); empty: every commissioned node. Others keep what they run,
  // now and in the catch-up after it.
  std::vector<std::string> only;
  // The batch size for this rollout instead of the policy's (same grammar:
  // a count, "N%" or a ramp list); null: the policy's.
  store::Json batch_size;

  bool Moves(const std::string& name) const { return MovesNode(only, name); }
  bool settled() const {
    return state == "succeeded" || state == "incomplete" || state == "failed" || state == "reverted";
  }
  // The revision nodes are being moved to now.
  const std::string& target() const { return reverting ? from : revision; }
  store::Json ToJson() const;
  // Untrusted input (it arrived through the log): kCorruption says why.
  static Result<RolloutRecord> FromJson(const store::Json& j);
  bool operator==(const RolloutRecord&) const = default;
};

// A batch size as the policy's `batch` takes it: a count, "N%" or a ramp
// list of those. ParseBatchSize reads the CLI's text ("2", "25%", "1,50%").
bool ValidBatchSize(const store::Json& b);
extern const char* const kBatchSizeRule;  // what a valid one is, for messages
Result<store::Json> ParseBatchSize(const std::string& text);

struct RolloutRequest {
  uint64_t id = 0;
  std::string revision;
  std::string by;
  bool automatic = false;
  bool agent = false;  // RolloutRecord::agent
  std::vector<std::string> only = {};  // RolloutRecord::only
  store::Json batch = nullptr;         // RolloutRecord::batch_size
  store::Json ToJson() const;
  static Result<RolloutRequest> FromJson(const store::Json& j);
};

struct RolloutControl {
  uint64_t seq = 0;
  uint64_t rollout = 0;  // the rollout id it is meant for
  std::string action;    // pause | resume | abort
  std::string by;
  store::Json ToJson() const;
  static Result<RolloutControl> FromJson(const store::Json& j);
};

// The control record `key` of a state, or nullopt when absent or unreadable.
template <typename T>
std::optional<T> ReadRecord(const store::State& state, const char* key) {
  const store::Register* reg = state.Find(key);
  if (!reg || !reg->value) return std::nullopt;
  auto r = T::FromJson(store::Json::parse(*reg->value, nullptr, false));
  if (!r.ok()) return std::nullopt;
  return std::move(r).value();
}

// A control record parsed once per write of its register, not on every
// read: a large cluster's rollout record is read by every node twice a
// second. The parsed record is shared by every reader in the process that
// reads the same write (each simulated node, the engine and the agent of
// one): a record names every node, and each reader held a copy.
template <typename T>
class RecordReader {
 public:
  explicit RecordReader(const char* key) : key_(key) {}
  // Whether the register was written since the last Read.
  bool Changed(const store::State& state) const { return !read_ || At(state) != at_; }
  // Null when the register is empty or its value does not parse.
  const T* Read(const store::State& state) {
    if (Changed(state)) {
      at_ = At(state);
      value_ = at_ ? Shared(state) : nullptr;
      read_ = true;
    }
    return value_.get();
  }
  // The same, shared: a holder keeps it without a copy of its own.
  std::shared_ptr<const T> ReadShared(const store::State& state) {
    Read(state);
    return value_;
  }

 private:
  // An entry's stamp names it, so the same rank and stamp is the same value.
  using Version = std::optional<std::pair<uint64_t, store::Stamp>>;
  Version At(const store::State& state) const {
    const store::Register* reg = state.Find(key_);
    if (!reg || !reg->value) return std::nullopt;
    return std::make_pair(reg->rank, reg->stamp);
  }
  std::shared_ptr<const T> Shared(const store::State& state) const {
    using Key = std::pair<std::string, std::pair<uint64_t, store::Stamp>>;
    static auto* parsed = new intern::SharedCache<Key, T>;
    return parsed->Get(Key{key_, *at_}, [&]() -> std::shared_ptr<const T> {
      auto r = ReadRecord<T>(state, key_);
      return r ? std::make_shared<const T>(std::move(*r)) : nullptr;
    });
  }
  const char* key_;
  bool read_ = false;
  Version at_;
  std::shared_ptr<const T> value_;
};

// What this node should run: the packages and services of `doc` that go to
// a node with `roles` ({"packages": {...}, "services": {...}}). An item
// without `roles` goes everywhere.
store::Json NodeSpec(const store::Json& doc, const std::vector<std::string>& roles);
// A node's roles: its `nodes.<name>.roles` in the document, else its
// membership tag `roles` (comma-separated), else none.
std::vector<std::string> NodeRoles(const store::Json& doc, const std::string& name, const std::string& roles_tag);
// Where a node with `roles` goes in `order` (the policy's role_order): the
// index of its first listed role, order.size() when none is listed.
size_t RoleRank(const std::vector<std::string>& order, const std::vector<std::string>& roles);
// Whether the node is commissioned (only those take part in rollouts).
bool Commissioned(const store::Json& doc, const std::string& name);

// What the planner knows about one node.
struct NodeView {
  std::string name;
  bool reachable = false;     // alive or suspect in this node's membership view
  bool suspect = false;       // suspect: maybe down, not yet known
  bool left = false;          // left the cluster on purpose (`leave`)
  bool commissioned = false;
  std::vector<std::string> roles;
  std::string roles_tag;  // its membership tag `roles`, for NodeRoles
  bool reported = false;  // a report has arrived
  bool fresh = false;     // ... and been heard again lately (SoftState::Fresh)
  std::optional<Time> heard;    // when its report last arrived (SoftState::HeardAt)
  std::optional<Time> checked;  // when a new passing health check of it arrived (SoftState::CheckedAt)
  bool counts_checks = true;    // false for a daemon that predates check counts: judged on `heard`
  uint64_t generation = 0;      // its start count (report version >> 32)
  std::string applied;    // applied revision
  std::string target;     // the revision it is working on or failed on
  bool healthy = false;
  std::string phase;
  std::string detail;  // its last job's result ("apply R failed: start hook api: ...")
  std::string release;  // the starlingd release it runs, as membership says (empty: not said)
  // Healthy as the gate counts it: on a fresh report while membership says
  // alive. A node killed right after reporting healthy is not.
  bool Serving() const { return reachable && !suspect && !left && fresh && healthy; }
};

// `starling graph` as JSON: {"services": [{"name", "nodes": [...]}], "nodes":
// [{"name", "services": [...]}], "edges": [{"from", "to", "via": [...]}]}.
// Edges are exactly store::ServiceEdges of `doc`; `via` names the params
// that reference the target and "after" when listed there. A service runs
// on the commissioned nodes among `views` whose NodeSpec holds it.
store::Json ServiceGraph(const store::Json& doc, const std::vector<NodeView>& views);

// The planner: pure, so that the simulator and unit tests drive it directly.
// Holds the holder's own timers (when it saw a batch start, since when each
// node has been healthy), which a new holder starts afresh: waits only grow.
class RolloutPlanner {
 public:
  struct Step {
    std::optional<RolloutRecord> write;  // the record to write, when it changed
    std::string log;                     // what happened, for the log
  };
  // What one step looks at: the log's records, the policy, every node's view.
  struct Inputs {
    std::optional<RolloutRecord> current;
    std::optional<RolloutRequest> request;
    std::optional<RolloutControl> control;
    RolloutPolicy policy;
    std::vector<NodeView> nodes;
    uint64_t ballot = 0;  // the holder's lease ballot, written as the fencing token
    bool frozen = false;
    Time now{};           // the holder's monotonic time
    int64_t wall_us = 0;  // wall time, for the record
    // Whether a node on its applied revision already runs what `revision`
    // would give it; unset: only the same revision id does.
    std::function<bool(const NodeView&, const std::string& revision)> same_content;
    bool OnRevision(const NodeView& v, const std::string& revision) const {
      // The content decides when it can (an agent rollout also asks for the
      // release running, which the revision id alone does not say).
      if (same_content && !v.applied.empty()) return same_content(v, revision);
      return v.applied == revision;
    }
  };
  // Starts a requested rollout, applies pause/resume/abort, judges the batch
  // in flight, fails or reverts past the threshold, then picks the next batch.
  Step Advance(const Inputs& in);
  void Reset() {
    batch_seen_.reset();
    healthy_since_.clear();
    fresh_ = true;
  }

 private:
  struct Pass;
  void StartRequested(Pass& pass);
  void ApplyControl(Pass& pass);
  void JudgeBatch(Pass& pass);
  void FailOrRevert(Pass& pass, bool late);
  void NextBatch(Pass& pass);
  // False when no node fits in the room left.
  bool ChooseBatch(Pass& pass, std::vector<const NodeView*>& candidates, size_t eligible, size_t out_now);
  bool Done(const NodeView& v, const std::string& revision, bool gate, Duration min_healthy, Time now);

  std::optional<std::pair<uint64_t, Time>> batch_seen_;  // batch_no, when first seen
  std::map<std::string, std::pair<uint64_t, Time>> healthy_since_;  // name -> (generation, since)
  bool fresh_ = true;  // no step taken since this node became the holder
};

// "a, b, c": node names as operators read them in reasons and warnings.
std::string JoinNames(const std::vector<std::string>& names);

// Per-node rollout phase for status: pending, upgrading, done, failed, down,
// left, reverting, reverted. `on_target`: the node runs what the rollout's
// target gives it (Inputs::OnRevision).
std::string NodeRolloutPhase(const RolloutRecord& r, const NodeView& v, bool on_target);

}  // namespace starling::node
