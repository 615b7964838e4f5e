// What the local API's requests mean: decodes an api::Request, acts on the
// Memberlist or the desired-state log and encodes the api::Reply. Transport-free (see api_server.h)
// and Asio-free. Runs on the protocol thread, like the Memberlist it drives.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "schema/api.capnp.h"
#include "starling/env.h"
#include "starling/membership/memberlist.h"
#include "starling/status.h"
#include "artifact_store.h"
#include "events.h"
#include "http_reply.h"
#include "lease.h"
#include "soft_state.h"
#include "state_commands.h"

namespace starling::node {

class MetricsText;

// An `artifact` command of the local API (see artifacts.h).
struct ArtifactCommand {
  std::string op;  // add | ls
  std::string path, name, version;  // path: the file as the client named it
  OpenFile file;                    // add: the file the client passed
};

// Facts about the daemon that the Memberlist does not know.
struct DaemonFacts {
  std::string data_dir;
  std::string version;
  Time started_at{};  // on the clock passed to ApiService
  std::string http;   // the --http address, empty when off
  std::string build;  // the commit built
  int64_t pid = 0;
  std::string ui_token;   // the console's token (console.h); empty: no console
  bool ui_write = false;  // --ui-write
};

class ApiService {
 public:
  using Respond = std::function<void(Bytes reply)>;
  // Starts the daemon's graceful leave; `done` gets OK once the leave has been
  // announced (the daemon exits shortly after), or why it cannot start.
  using LeaveFn = std::function<void(std::function<void(Status)> done)>;
  // Streamed replies (`monitor`): one frame per call, false once the client is gone.
  using Push = std::function<bool(Bytes frame)>;
  // Subscribes `deliver` to the log lines (JSON) of `level` and above;
  // kInvalidArgument for an unknown level.
  using MonitorFn =
      std::function<Status(const std::string& level, std::function<bool(const std::string& line)> deliver)>;

  // The references must outlive the service.
  ApiService(membership::Memberlist& members, store::Replicator& replicator, Lease& lease, const SoftState& soft,
             const Clock& clock, DaemonFacts facts, LeaveFn leave);
  ~ApiService() { *alive_ = false; }
  ApiService(const ApiService&) = delete;
  ApiService& operator=(const ApiService&) = delete;

  // Always answers exactly once, possibly later (join, leave). A malformed
  // request or one of another API version gets a Reply whose `error` says so.
  // `file` is what the client passed with the request, if anything.
  void Handle(ByteView request, Respond respond, Push push = {}, OpenFile file = nullptr);
  void SetMonitor(MonitorFn monitor) { monitor_ = std::move(monitor); }
  // Runs a `keys` command (node/keys.h); answers JSON text, later.
  using KeysFn = std::function<void(const std::string& op, const std::string& key, bool local,
                                    std::function<void(Result<store::Json>)> done)>;
  void SetKeys(KeysFn keys) { keys_ = std::move(keys); }
  // Runs an `artifact` command; answers JSON text, later.
  using ArtifactsFn = std::function<void(const ArtifactCommand&, std::function<void(Result<store::Json>)> done)>;
  void SetArtifacts(ArtifactsFn artifacts) { artifacts_ = std::move(artifacts); }
  // Makes the tags set by a `tags` request outlive a restart; a failure
  // refuses the change.
  using SaveTagsFn = std::function<Status(const membership::Tags&)>;
  void SetSaveTags(SaveTagsFn save) { save_tags_ = std::move(save); }
  // Runs `work` off the protocol thread, then `done` back on it. Set, an
  // apply's document is parsed there, so a costly one cannot stall gossip.
  using OffloadFn = std::function<void(std::function<void()> work, std::function<void()> done)>;
  void SetOffload(OffloadFn offload) { offload_ = std::move(offload); }
  // User events and queries (`starling event`, `starling query`); unset, they are refused.
  void SetEvents(UserEvents* events, Queries* queries) {
    events_ = events;
    queries_ = queries;
  }
  // Adds families to /metrics (for parts of the daemon this does not hold).
  void AddMetrics(std::function<void(MetricsText&)> fn) { extra_metrics_.push_back(std::move(fn)); }

  // A Reply carrying only `message` as its error; with a Status, its kind
  // too (`errorCode`), its message after `prefix`.
  static Bytes ErrorReply(const std::string& message);
  static Bytes ErrorReply(const Status& status, const std::string& prefix = "");

  // The read-only HTTP endpoints: /metrics, /health, /v1/members, /v1/info,
  // /v1/state, /v1/rollout, /v1/nodes. On the protocol thread.
  HttpReply HandleHttp(const std::string& path) const;
  // What /health says: "starting" and "leaving" answer 503, "serving" 200.
  void SetPhase(std::string phase) { phase_ = std::move(phase); }

 private:
  // The two halves of Handle, for the request variant defined in api_service.cc.
  template <typename Request>
  void HandleMembership(Request& request, Respond respond, Push push);
  template <typename Request>
  void HandleState(Request& request, Respond respond);
  Bytes InfoReply() const;
  Bytes MembersReply() const;
  void FillMembers(api::Reply::Builder reply) const;
  void FillInfo(api::Info::Builder info) const;
  store::Json NodesJson() const;
  store::Json MembersJson() const;
  store::Json InfoJson() const;
  std::string Metrics() const;

  membership::Memberlist& members_;
  store::Replicator& replicator_;
  Lease& lease_;
  const SoftState& soft_;
  StateCommands state_;
  const Clock& clock_;
  DaemonFacts facts_;
  LeaveFn leave_;
  std::string phase_ = "starting";
  MonitorFn monitor_;
  UserEvents* events_ = nullptr;
  Queries* queries_ = nullptr;
  KeysFn keys_;
  ArtifactsFn artifacts_;
  SaveTagsFn save_tags_;
  OffloadFn offload_;
  std::vector<std::function<void(MetricsText&)>> extra_metrics_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // false once destroyed, for offloaded work
};

}  // namespace starling::node
