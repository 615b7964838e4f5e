// The web console: the pages under /ui/ (compiled into the binary), the
// HTTP API they read and act through, and the event stream that keeps them
// live. Every read and every action is a local-API request handed to
// ApiService::Handle, the path the CLI takes, so a page can do nothing the
// CLI cannot and is refused what the CLI would be refused.
//
//   GET  /ui/...              the pages (index.html, app.js, style.css)
//   GET  /v1/history          /v1/diff?from=R&to=R   /v1/get?revision=R
//   GET  /v1/graph            /v1/lease   /v1/artifacts   /v1/hooks   /v1/console
//   GET  /v1/events           server-sent events: `change` with the topics that
//                             changed (members, nodes, state, lease), coalesced
//   POST /v1/rollout/start    {revision?, nodes?, batch?, yes?}
//   POST /v1/rollout/control  {action: pause|resume|abort}
//   POST /v1/rollback         {to?}
//   POST /v1/lifecycle        {nodes: [..], to: commissioned|decommissioned}
//   POST /v1/freeze           {reason}     POST /v1/unfreeze
// and every read-only path of ApiService::HandleHttp.
//
// Who may act: a POST is refused (403, nothing changes) unless the daemon
// runs with write enabled, the X-Starling-Token header carries the token,
// and an Origin header, when sent, names the host the request was sent to
// (a page of another site cannot act with a token it does not know, and
// a browser sends Origin on every cross-site POST). The body must be JSON
// (application/json, which a cross-site form cannot send without a
// preflight this server never grants). No cookie is ever set.
//
// Single-threaded on the protocol thread, like ApiService.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "api_service.h"
#include "http_reply.h"
#include "soft_state.h"
#include "lease.h"
#include "starling/env.h"
#include "starling/membership/memberlist.h"
#include "starling/store/replicator.h"

namespace starling::node {

struct ConsoleConfig {
  bool write = false;  // --ui-write
  std::string token;   // what X-Starling-Token must carry
  Duration coalesce = std::chrono::milliseconds(250);  // change events at most this often
  Duration heartbeat = std::chrono::seconds(15);       // a comment line, so a gone client is noticed
  // Runs a function on the protocol thread: an event stream opens on the
  // HTTP server's thread.
  std::function<void(std::function<void()>)> post;
};

// One asset of the pages, compiled in (cmake/embed_assets.cmake).
struct ConsoleAsset {
  const char* path;  // "/ui/app.js"
  const char* content_type;
  const unsigned char* data;
  size_t size;
};
const std::vector<ConsoleAsset>& ConsoleAssets();

class Console {
 public:
  // The references must outlive the console. `recent_hooks` gives this
  // node's last hook runs (NodeAgent::RecentHooks).
  Console(ApiService& service, Clock& clock, membership::Memberlist& members, store::Replicator& replicator,
          const SoftState& soft, Lease& lease, std::function<store::Json()> recent_hooks, ConsoleConfig config);
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  // Answers exactly once through `done`, possibly later.
  void Serve(const HttpRequest& request, std::function<void(HttpReply)> done);

 private:
  void Read(const HttpRequest& request, std::function<void(HttpReply)> done);
  void Write(const HttpRequest& request, std::function<void(HttpReply)> done);
  // Hands a local-API request to the service and turns its reply into JSON.
  void Call(const std::function<void(api::Request::Builder)>& fill, std::function<void(HttpReply)> done);
  void Subscribe(std::shared_ptr<HttpStream> stream);
  void Tick();
  // What each topic looks like now, cheaply: a change in one is an event.
  std::vector<uint64_t> Stamps() const;

  ApiService& service_;
  Clock& clock_;
  membership::Memberlist& members_;
  store::Replicator& replicator_;
  const SoftState& soft_;
  Lease& lease_;
  std::function<store::Json()> recent_hooks_;
  ConsoleConfig cfg_;
  std::vector<std::shared_ptr<HttpStream>> streams_;
  std::vector<uint64_t> last_;
  Time last_beat_{};
  Clock::TimerId timer_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace starling::node
