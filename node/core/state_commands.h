// What the desired-state commands of the local API mean (apply, get,
// history, diff, rollback), over the node's Replicator. Transport-free, so
// tests drive it directly; runs on the protocol thread.
//
// Apply semantics: the document's sections replace the same sections of the
// current desired state (a section given as null is removed); sections it
// does not name stay as they are. `freeze` is the exception: an apply may
// freeze, but only Unfreeze lifts a freeze (the apply keeps it and warns). The merged state must validate as a whole,
// and only the objects that differ are written, so that writers touching
// different objects never overwrite each other.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "starling/status.h"
#include "starling/store/document.h"
#include "starling/store/replicator.h"

namespace starling::node {

// Notes of the entries the lease's voter keeper writes start with this.
inline constexpr const char* kVotersNote = "voters:";

// The rank of a write to `voters` (store::Op::rank), which decides a merge
// of two voter histories before the stamps do:
//   1. the epoch: how many voter changes that chose, removed or replaced
//      voters led to the set (the set it replaced plus one), so such a
//      change made by a writer that saw the current set always wins over
//      it, and of two sides that changed voters without seeing each other,
//      the one with the longer voter history wins. The lease adding a voter
//      to its own set (a refill) keeps the epoch and wins by size (3.): a
//      node that ran alone and refills its one-voter set as others join
//      must not outrank the set of the cluster it joined;
//   2. an operator's set (apply, `voters --force-set`) over one the lease
//      chose or changed by itself;
//   3. the larger set (the larger cluster chose it);
//   4. the longer desired-state history: how many entries the writer held.
// Only then does the newer stamp win. A node that ran alone and chose
// itself (epoch 1, automatic, one voter) therefore never overrides the set
// of the cluster it joins.
// Who a write of `voters` speaks for (VoterRank::by_operator): an operator
// (apply, `voters --force-set`), or the lease keeping its own set (its
// choice, a decommission shrinking it).
enum class VoterSource { kOperator, kLease };

struct VoterRank {
  uint64_t epoch = 0;
  bool by_operator = false;
  uint64_t size = 0;
  uint64_t history = 0;
  static constexpr int kEpochShift = 40;
  static constexpr int kOperatorShift = 39;
  static constexpr int kSizeShift = 36;
  static constexpr uint64_t kSizeMax = 7;
  static constexpr uint64_t kHistoryMax = (uint64_t{1} << kSizeShift) - 1;
  uint64_t Encode() const {
    return (epoch << kEpochShift) | (uint64_t{by_operator} << kOperatorShift) |
           (std::min(size, kSizeMax) << kSizeShift) | std::min(history, kHistoryMax);
  }
  static VoterRank Decode(uint64_t rank) {
    return {rank >> kEpochShift, ((rank >> kOperatorShift) & 1) != 0, (rank >> kSizeShift) & kSizeMax,
            rank & kHistoryMax};
  }
};

// "frozen: <reason> (by <who>)" while the document is frozen.
std::optional<std::string> FrozenReason(const store::Json& doc);
// The members of `alive` that switches.auto_commission commissions: none
// while the switch is off or `doc` is frozen (lifecycle changes wait for
// unfreeze), else those `doc` does not name as nodes.
std::vector<std::string> ToAutoCommission(const store::Json& doc, const std::vector<std::string>& alive);

struct ApplyRequest {
  std::string document;  // YAML or JSON text
  std::string source;    // e.g. the file name, for messages
  std::string base;      // revision the operator edited, or empty
  // Apply-time values for ${NAME} in service params (store::FillSettings),
  // in the order given; a name given twice is refused.
  std::vector<std::pair<std::string, std::string>> settings = {};
  // Voters that are no member are refused unless forced.
  bool force = false;
};

class StateCommands {
 public:
  // `members`: the names membership knows (any status), for the checks of
  // names an operator types; unset, every name passes. `alive`: the alive
  // members, whom an apply that turns on switches.auto_commission
  // commissions in the same change (else the lease does it a moment later,
  // and the revision the apply printed is not the one a rollout starts).
  explicit StateCommands(store::Replicator& replicator, std::function<std::vector<std::string>()> members = {},
                         std::function<std::vector<std::string>()> alive = {})
      : replicator_(replicator), members_(std::move(members)), alive_(std::move(alive)) {}

  // The members that are not gone (left) and the gossip protocol version
  // each speaks: a feature that needs a newer version is refused naming
  // those too old. Unset, none is refused.
  using Speakers = std::function<std::vector<std::pair<std::string, unsigned>>()>;
  void SetSpeakers(Speakers speakers) { speakers_ = std::move(speakers); }

  // {"revision", "previous", "changed", "objects", "warnings": [...]}
  Result<store::Json> Apply(const ApplyRequest& request);
  // Apply in two steps, so the costly one can run off the protocol thread:
  // Parse reads the document and fills its settings (no state; any thread),
  // ApplyParsed does the rest.
  static Result<store::Json> Parse(const ApplyRequest& request);
  Result<store::Json> ApplyParsed(const ApplyRequest& request, store::Json given);
  // The document at `revision` (current when empty) as "json" or "yaml"
  // text; service params' values hidden unless `show_params`.
  Result<std::string> Get(const std::string& revision, const std::string& format, bool show_params) const;
  // Oldest first.
  store::Json History() const;
  // Changes from `from` to `to` (current when empty).
  // `hide_params`: service params' values hidden on both sides (store::HideParams).
  Result<store::Json> Diff(const std::string& from, const std::string& to, bool hide_params = false) const;
  // A new revision whose content equals `to` (the previous revision when
  // empty), except for `voters` and `freeze`, which stay as they are. Same
  // reply as Apply, plus "to".
  Result<store::Json> Rollback(const std::string& to);

  // Stops new rollouts and lifecycle changes, which are then refused naming
  // `reason`; Unfreeze lifts it.
  Result<store::Json> Freeze(const std::string& reason, const std::string& by);
  Result<store::Json> Unfreeze();
  // Moves the named nodes (one change for the batch) to `lifecycle`
  // (commissioned or decommissioned). Refused while frozen. A decommissioned
  // voter leaves the voter set in the same change, one voter at a time.
  // A name that is neither a member nor a node of the document is refused
  // unless `force` (a typo would make a phantom node).
  Result<store::Json> SetLifecycle(const std::vector<std::string>& nodes, const std::string& lifecycle,
                                   bool force = false);
  // The freeze reason when frozen.
  std::optional<std::string> Frozen() const;
  // The lease's own voter changes (validated like any change).
  Result<store::Json> SetVoters(std::vector<std::string> voters, const std::string& why);

 private:
  // Edits a copy of the current document, validates the result and writes
  // the objects that differ (nothing when none does).
  Result<store::Json> Change(const std::function<Status(store::Json&)>& edit, std::string note,
                             const std::string& refused, store::Hlc base, store::Json warnings,
                             VoterSource source = VoterSource::kOperator);
  Result<store::Json> Change(const std::function<Status(store::Json&)>& edit, std::string note,
                             VoterSource source = VoterSource::kOperator);
  Result<store::Json> Write(std::vector<store::Op> ops, std::string note, store::Hlc base,
                            store::Json warnings, VoterSource source);

  // The names of `names` that are no member (nor, with `doc`, a node it names).
  std::vector<std::string> Unseen(const std::vector<std::string>& names, const store::Json* doc) const;
  // " (members: a, b, ...)" for messages; empty when members are unknown.
  std::string KnownList() const;

  store::Replicator& replicator_;
  std::function<std::vector<std::string>()> members_;
  std::function<std::vector<std::string>()> alive_;
  Speakers speakers_;
  // Why moving the document from `before` to `after` is refused ("" when not):
  // an agent change with anything else, or with members too old for it.
  std::string AgentChangeRefusal(const store::Json& before, const store::Json& after) const;
};

}  // namespace starling::node
