// NodeCore: the protocols one node runs, wired once.
//
// The daemon (daemon/daemon.cc) and the simulator's node stack
// (tests/sim/node_stack.h) both build a node through this class, so the
// object graph they test is the one that ships. What differs between them
// comes in through NodeSeams: the daemon hands in RocksDB-backed stores, a
// hook runner on a worker thread and the Asio clock; the simulator hands in
// memory stores, scripted hooks and virtual time.
//
// Object graph (arrows: "is given a reference to"):
//
//   Memberlist ─ UserChannels ─┬─ MemberlistGossip ─ Replicator ─ DesiredLog
//                              ├─ MemberlistLeaseNet ─ Lease ─ BallotStore
//                              ├─ SoftState
//                              ├─ KeyCommands (when a keyring is given)
//                              ├─ Artifacts ─ ArtifactStore (when given)
//                              ├─ UserEvents ─┐
//                              └─ Queries ────┴─ EventHandlers ─ HookExec (one per handler)
//   VoterKeeper  → Memberlist, Replicator, Lease       (when keep_voters)
//   NodeAgent    → Replicator, SoftState, HookExec, AppliedStore, Artifacts
//   RolloutEngine→ Memberlist, Replicator, SoftState, Lease
//
// Membership events reach the event handlers through OnMemberEvent (the
// Memberlist's one event callback belongs to its owner).
//
// Every change to the log pokes the voter keeper, the agent, the rollout
// engine and the artifact fetcher, in that order; a fetched artifact pokes
// the agent.
//
// Contract: single-threaded on the protocol thread, like everything it holds.
// The seams must outlive the NodeCore. Construction registers the channel
// handlers; Start() starts the timers (the Memberlist is started and joined
// by the caller).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent.h"
#include "artifact_store.h"
#include "artifacts.h"
#include "event_handlers.h"
#include "events.h"
#include "hook.h"
#include "keys.h"
#include "lease.h"
#include "rollout_engine.h"
#include "soft_state.h"
#include "starling/env.h"
#include "starling/membership/keyring.h"
#include "starling/membership/memberlist.h"
#include "starling/membership/user_channels.h"
#include "starling/store/log.h"
#include "starling/store/memberlist_gossip.h"
#include "starling/store/replicator.h"
#include "voters.h"

namespace starling::node {

// The node-level timings a membership profile implies (lease timings:
// LeaseConfigFor). `lan` and `wan` keep the defaults of each config; `local`
// (one machine, many nodes, tests and demos) is quicker.
struct NodeTiming {
  Duration soft_state_refresh;  // how often a node re-announces its report
  Duration health_every;        // the agent's health checks while idle
  Duration voter_spacing;       // between two voter replacements
};
inline constexpr Duration kSoftStateRefresh = std::chrono::seconds(10);
inline constexpr Duration kLocalSoftStateRefresh = std::chrono::seconds(3);
inline constexpr Duration kLocalHealthEvery = std::chrono::seconds(2);
inline constexpr Duration kLocalVoterSpacing = std::chrono::seconds(3);
NodeTiming NodeTimingFor(const std::string& profile);

struct NodeOptions {
  std::string name;
  uint32_t generation = 0;  // grows with every start of this node
  std::string profile = "lan";
  Duration reap_timeout = std::chrono::hours(24);  // a voter dead this long is replaced
  // False: the voter set is only what Lease::SetVoters is told (simulator
  // tests of a fixed set); true: VoterKeeper keeps it from the desired state.
  bool keep_voters = true;
  bool founder = true;  // see VoterConfig::founder
  AgentConfig agent;  // as given (the daemon takes health_every from NodeTimingFor)
  ArtifactConfig artifacts;
  EventHandlerConfig events;
};

// What the host provides. Optional parts may be left empty: without an
// artifact store there is no artifact protocol; without a keyring no `keys`
// commands.
struct NodeSeams {
  NodeSeams(Clock& c, Random& r, membership::Memberlist& m, store::DesiredLog& l, BallotStore& b, AppliedStore& a,
            HookExec& h)
      : clock(c), random(r), members(m), log(l), ballots(b), applied(a), hooks(h) {}
  Clock& clock;
  Random& random;
  membership::Memberlist& members;
  store::DesiredLog& log;
  BallotStore& ballots;
  AppliedStore& applied;
  HookExec& hooks;
  ArtifactStore* artifact_store = nullptr;
  Offload offload;  // required with an artifact store
  std::shared_ptr<membership::Keyring> keyring;
  KeyCommands::Persist persist_keyring;  // required with a keyring
  AgentBinary* agent_binary = nullptr;   // none: the agent section moves nothing
  std::vector<EventHandlerSpec> event_handlers;  // their HookExecs must outlive the NodeCore
};

class NodeCore {
 public:
  NodeCore(NodeOptions options, NodeSeams seams);
  ~NodeCore();
  NodeCore(const NodeCore&) = delete;
  NodeCore& operator=(const NodeCore&) = delete;

  void Start();
  // What the Memberlist reported; its owner passes every event on.
  void OnMemberEvent(const membership::Event& event);

  const std::string& name() const { return opts_.name; }
  membership::Memberlist& members() { return seams_.members; }
  membership::UserChannels& channels() { return *channels_; }
  store::MemberlistGossip& gossip() { return *gossip_; }
  store::Replicator& replicator() { return *replicator_; }
  Lease& lease() { return *lease_; }
  SoftState& soft() { return *soft_; }
  NodeAgent& agent() { return *agent_; }
  RolloutEngine& engine() { return *engine_; }
  VoterKeeper* voters() { return voters_.get(); }       // null unless keep_voters
  Artifacts* artifacts() { return artifacts_.get(); }   // null without an artifact store
  KeyCommands* keys() { return keys_.get(); }           // null without a keyring
  UserEvents& events() { return *events_; }
  Queries& queries() { return *queries_; }
  EventHandlers& handlers() { return *handlers_; }

 private:
  // This node's `roles` membership tag.
  std::string RolesTag() const;

  NodeOptions opts_;
  NodeSeams seams_;
  // Declared in construction order; destroyed in reverse.
  std::unique_ptr<membership::UserChannels> channels_;
  std::unique_ptr<store::MemberlistGossip> gossip_;
  std::unique_ptr<store::Replicator> replicator_;
  std::unique_ptr<KeyCommands> keys_;
  std::unique_ptr<MemberlistLeaseNet> lease_net_;
  std::unique_ptr<Lease> lease_;
  std::unique_ptr<VoterKeeper> voters_;
  std::unique_ptr<SoftState> soft_;
  std::unique_ptr<NodeAgent> agent_;
  std::unique_ptr<RolloutEngine> engine_;
  std::unique_ptr<Artifacts> artifacts_;
  std::unique_ptr<EventHandlers> handlers_;
  std::unique_ptr<UserEvents> events_;
  std::unique_ptr<Queries> queries_;
};

}  // namespace starling::node
