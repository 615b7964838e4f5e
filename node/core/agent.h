// The node agent: makes this node run what the desired state gives it, through
// the hooks in its hooks directory, and says how it went in its gossiped
// report (applied revision, health, phase, service outputs, last result).
//
// What it does, and when
//  * At start: loads what it ran before this restart and checks it: each
//    package's verify hook (install again when it fails), each service's
//    health hook (start again when it fails, then wait for health). That is
//    how drift is repaired.
//  * On an assignment: when the rollout record (written by the lease holder)
//    assigns this node a revision in the current batch, with a ballot no
//    lower than any it has seen on a record, it moves to that revision:
//      stopping    stop hooks of the services that change (dependents first)
//      installing  remove hooks of packages that went away; install, then
//                  verify, of packages that changed
//      starting    start hooks in dependency order, each once its
//                  ${service.output} inputs are known (from any node)
//      checking    health hooks until all pass or the node deadline passes
//    then reports the revision applied and healthy, and stores what it runs.
//    A package change restarts its services unless the package says
//    `restart: false`.
//  * When decommissioned: stops every service and runs every remove hook.
//  * Otherwise: runs the health hooks every `health_every`.
// Hook environment (documented in README "Hooks"): STARLING_HOOK, STARLING_NODE,
// STARLING_REVISION, STARLING_DATA_DIR, STARLING_PACKAGE, STARLING_VERSION,
// STARLING_PREVIOUS_VERSION, STARLING_ARTIFACT, STARLING_SERVICE,
// STARLING_PARAM_<NAME>; stdin carries the same as JSON. A start hook
// publishes outputs as stdout lines `output NAME=VALUE`.
//
// Single-threaded on the protocol thread: hooks run through HookExec, which
// calls back on the protocol thread.
#pragma once

#include <deque>
#include <functional>
#include <optional>
#include <string>

#include "hook.h"
#include "rollout.h"
#include "soft_state.h"
#include "starling/store/document.h"
#include "starling/store/replicator.h"

namespace starling::node {

// Where install hooks get a package's artifact from (artifacts.h).
class ArtifactSource {
 public:
  virtual ~ArtifactSource() = default;
  // The local path of the complete, verified artifact; nullopt while it is
  // being fetched (asking starts the fetch), with how far in `progress`.
  virtual std::optional<std::string> Need(const std::string& digest, std::string* progress) = 0;
};

// The starlingd this node runs, and the move to another (host/agent_upgrade.h).
class AgentBinary {
 public:
  virtual ~AgentBinary() = default;
  virtual std::string version() const = 0;  // the release running
  virtual std::string digest() const = 0;   // sha256: of the running binary
  // A copy it keeps of the binary with `digest` (the one it replaced last), or "".
  virtual std::string Kept(const std::string& digest) const = 0;
  // Why the last move did not take (the new binary did not come up and the
  // one before was put back), or "".
  virtual std::string LastFailure() const = 0;
  // Checks the binary at `path` (its digest, `--version` says `version`, it
  // can run on the data dir), swaps it in keeping the running one, and
  // restarts into it: `failed` is called (nothing swapped) only when a
  // check fails; on success the process restarts.
  virtual void Restart(const std::string& path, const std::string& version, const std::string& digest,
                       std::function<void(Status)> failed) = 0;
};

// Where the agent keeps what this node runs (survives restarts).
class AppliedStore {
 public:
  virtual ~AppliedStore() = default;
  virtual Result<std::optional<std::string>> Load() = 0;
  virtual Status Save(const std::string& json) = 0;
};

// In memory, for the simulator.
class MemoryAppliedStore final : public AppliedStore {
 public:
  Result<std::optional<std::string>> Load() override { return saved_; }
  Status Save(const std::string& json) override {
    saved_ = json;
    return Status::Ok();
  }

 private:
  std::optional<std::string> saved_;
};

struct AgentConfig {
  Duration health_every = std::chrono::seconds(5);
  Duration health_retry = std::chrono::seconds(1);  // while waiting for a service to get healthy
  // While this node is in a rollout's batch: how often its health is checked
  // and confirmed to the coordinator, which counts it done only on a word
  // from after min_healthy.
  Duration batch_health_every = std::chrono::milliseconds(500);
  Duration wait_retry = std::chrono::milliseconds(500);  // waiting for a document or an input
  Duration hook_timeout = std::chrono::seconds(120);
  std::string data_dir;  // passed to hooks as STARLING_DATA_DIR
};

class NodeAgent {
 public:
  // `roles_tag` gives this node's `roles` membership tag (used when the
  // desired state names no roles for it). References must outlive the agent.
  NodeAgent(std::string self, Clock& clock, store::Replicator& replicator, SoftState& soft, HookExec& hooks,
            AppliedStore& store, std::function<std::string()> roles_tag, AgentConfig config = {});
  ~NodeAgent();
  NodeAgent(const NodeAgent&) = delete;
  NodeAgent& operator=(const NodeAgent&) = delete;

  void Start();
  // Where install hooks get artifacts from; none: STARLING_ARTIFACT_PATH stays empty.
  void SetArtifacts(ArtifactSource* artifacts) { artifacts_ = artifacts; }
  // How it moves this node to the desired state's `agent`; none: the
  // section is recorded and nothing moves.
  void SetBinary(AgentBinary* binary) { binary_ = binary; }
  // The highest lease ballot this node has seen: a rollout record whose
  // ballot is out of reach from it (lease.h) is ignored. Unset, none is.
  void SetHighestBallot(std::function<uint64_t()> highest) { highest_ballot_ = std::move(highest); }
  // Looks for work; call after every change to the log.
  void Refresh();
  bool busy() const { return job_.has_value(); }
  // The last hook runs of this node's jobs, newest first: [{kind, hook,
  // revision, result, ok, took_ms, at_unix, output}] with the tail of
  // each one's output. Kept in memory only: the console's node page.
  store::Json RecentHooks() const;
  const std::string& applied() const { return applied_; }

 private:
  using Done = std::function<void(bool ok, std::string detail)>;
  struct Step {
    std::string phase;
    std::function<void(Done)> run;
  };
  struct Job {
    std::string name;    // "apply R", "verify", "remove"
    std::string target;  // the revision it works towards
    std::deque<Step> steps;
    std::function<void()> on_success;
    Time started{};
  };

  void Load();
  void Save();
  // What a restart is to find: `revision` applied, running `current`.
  void SaveAs(const std::string& revision, const store::Json& current);
  void Begin(Job job);
  void Next();
  void Fail(const std::string& detail);
  void Report(const std::function<void(NodeReport&)>& edit);
  void ScheduleHealth();
  // Whether this node is in the current batch of the rollout record.
  bool InCurrentBatch() const;
  void CheckHealth();

  // `agent_rollout`: move the starlingd to the revision's `agent` section
  // too; otherwise the binary stays as it is.
  Job ApplyJob(const std::string& revision, const store::Json& doc, bool agent_rollout);
  Job VerifyJob();
  Job RemoveJob();
  Step Hook(const std::string& phase, const std::string& kind, const std::string& hook,
            std::map<std::string, std::string> env, std::function<void(const HookResult&)> after = {});
  void Remember(const std::string& kind, const std::string& hook, const std::string& revision,
                const Result<HookResult>& r);
  Step StopService(const std::string& name);
  Step InstallPackage(const std::string& name, const store::Json& pkg, Duration deadline);
  // Waits until the package's artifact is here (none: at once), then sets
  // STARLING_ARTIFACT_PATH in `env`.
  void AwaitArtifact(const std::string& digest, Time until, std::shared_ptr<std::map<std::string, std::string>> env,
                     Done done);
  Step StartService(const std::string& name, const store::Json& svc, Duration deadline);
  // Starts each of `order` (dependency order, `svcs` by name) as soon as its
  // inputs are known; fails when one is not started by its `start_deadline`
  // (else `deadline`).
  Step StartServices(std::vector<std::string> order, const store::Json& svcs, Duration deadline);
  // Records a started service and publishes the outputs its start hook printed.
  void Started(const std::string& name, const store::Json& svc, const std::string& hook_output);
  Step WaitHealthy(Duration deadline);
  // Moves this node's starlingd to `want` (the `agent` section; null: the
  // binary it ran before any), from `revision`'s assignment in `batch`.
  Step UpgradeAgent(const store::Json& spec, const std::string& revision, uint64_t batch, Duration deadline);
  // After a restart: whether the move recorded before it took.
  void SettleAgentMove(const store::Json& saved);
  void ReportAgentFailure();
  // Runs every health hook of the running services; `done(ok, detail)`.
  void RunHealth(Done done);
  std::map<std::string, std::string> BaseEnv(const std::string& kind) const;
  std::map<std::string, std::string> ServiceEnv(const std::string& name, const store::Json& svc,
                                                const std::map<std::string, std::string>& params) const;
  std::optional<std::map<std::string, std::string>> ResolveParams(const store::Json& svc, std::string* missing) const;
  std::optional<std::string> ResolveParam(const store::Json& value, std::string* missing) const;
  std::map<std::string, std::string> KnownParams(const store::Json& svc) const;

  std::string self_;
  Clock& clock_;
  store::Replicator& replicator_;
  SoftState& soft_;
  HookExec& hooks_;
  AppliedStore& store_;
  std::function<std::string()> roles_tag_;
  AgentConfig cfg_;
  ArtifactSource* artifacts_ = nullptr;
  AgentBinary* binary_ = nullptr;
  // The starlingd this node ran before any `agent` section moved it
  // ({version, artifact}); what a revision without the section brings back.
  store::Json agent_original_;
  std::optional<std::string> agent_failure_;  // a move that did not take, to report after the start's checks
  std::string pending_target_;                // the revision of that move
  store::Json agent_pending_;                 // a move in flight: what to settle after the restart
  std::function<uint64_t()> highest_ballot_;
  uint64_t out_of_reach_ = 0;  // the out-of-reach ballot last warned about
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::deque<store::Json> recent_hooks_;

  // What runs here: packages installed and services started (same shape as
  // NodeSpec), the revision that was last applied in full, service outputs.
  store::Json current_ = {{"packages", store::Json::object()}, {"services", store::Json::object()}};
  std::string applied_;
  std::map<std::string, std::string> outputs_;
  uint64_t ballot_ = 0;  // highest ballot seen on a rollout record
  mutable RecordReader<RolloutRecord> record_{kRolloutKey};
  std::optional<std::pair<std::string, uint64_t>> attempted_;  // last assignment acted on
  bool removed_ = false;
  bool started_ = false;

  std::optional<Job> job_;
  Clock::TimerId health_timer_ = 0, retry_timer_ = 0;
};

}  // namespace starling::node
