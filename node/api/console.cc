#include "console.h"

#include <capnp/message.h>

#include <algorithm>

#include "schema/api.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/store/document.h"
#include "starling/text.h"

namespace starling::node {

using store::Json;

namespace {

HttpReply JsonReply(int status, const Json& body) { return {status, "application/json", store::CanonicalJson(body) + "\n"}; }
HttpReply Error(int status, const std::string& message) { return JsonReply(status, Json{{"error", message}}); }

// The HTTP status of a refusal, from the kind the service gave it.
int StatusOf(const std::string& code) {
  if (code == CodeName(Status::Code::kNotFound)) return 404;
  if (code == CodeName(Status::Code::kConflict)) return 409;
  if (code == CodeName(Status::Code::kUnavailable)) return 503;
  if (code == CodeName(Status::Code::kInternal) || code == CodeName(Status::Code::kIoError) ||
      code == CodeName(Status::Code::kCorruption))
    return 500;
  return 400;
}

// Equal whatever the bytes, in time that depends on the length only.
bool SameToken(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || a.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

uint64_t Mix(uint64_t h, const std::string& s) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return (h ^ 0xff) * 1099511628211ull;
}
uint64_t Mix(uint64_t h, uint64_t v) { return Mix(h, std::to_string(v)); }

constexpr uint64_t kFnvBasis = 1469598103934665603ull;
constexpr const char* kTopics[] = {"members", "nodes", "state", "lease"};

// The fields of an action's body, each read as the type it must have; the
// first that is not is named in `error`. A missing or null field is empty.
struct Body {
  const Json& j;
  std::string error;

  const Json* Find(const char* key) {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  std::string Text(const char* key) {
    const Json* v = Find(key);
    if (!v) return "";
    if (v->is_string()) return v->get<std::string>();
    if (v->is_number_integer()) return std::to_string(v->get<int64_t>());  // batch: 2
    Fail(std::string(key) + ": expected text");
    return "";
  }
  bool Flag(const char* key) {
    const Json* v = Find(key);
    if (v && !v->is_boolean()) Fail(std::string(key) + ": expected true or false");
    return v && v->is_boolean() && v->get<bool>();
  }
  std::vector<std::string> Names(const char* key) {
    std::vector<std::string> out;
    const Json* v = Find(key);
    if (!v) return out;
    if (!v->is_array() || v->size() > 100000) {
      Fail(std::string(key) + ": expected a list of node names");
      return out;
    }
    for (const auto& n : *v) {
      if (!n.is_string() || !text::IsCleanName(n.get_ref<const std::string&>())) {
        Fail(std::string(key) + ": " + text::Printable(n.dump().substr(0, 80), true) + " is not a node name");
        return {};
      }
      out.push_back(n.get<std::string>());
    }
    return out;
  }
  void Fail(const std::string& why) {
    if (error.empty()) error = why;
  }
};

void SetNames(capnp::List<capnp::Text>::Builder list, const std::vector<std::string>& names) {
  for (unsigned i = 0; i < names.size(); ++i) list.set(i, names[i]);
}

}  // namespace

Console::Console(ApiService& service, Clock& clock, membership::Memberlist& members, store::Replicator& replicator,
                 const SoftState& soft, Lease& lease, std::function<Json()> recent_hooks, ConsoleConfig config)
    : service_(service),
      clock_(clock),
      members_(members),
      replicator_(replicator),
      soft_(soft),
      lease_(lease),
      recent_hooks_(std::move(recent_hooks)),
      cfg_(std::move(config)) {}

Console::~Console() {
  *alive_ = false;
  if (timer_) clock_.Cancel(timer_);
}

void Console::Serve(const HttpRequest& request, std::function<void(HttpReply)> done) {
  const std::string& path = request.path;
  if (request.method == "POST") return Write(request, std::move(done));
  if (path == "/" || path == "/ui")
    return done(HttpReply{302, "text/plain", "see /ui/\n", {{"Location", "/ui/"}}});
  if (path.rfind("/ui/", 0) == 0) {
    const std::string want = path == "/ui/" ? "/ui/index.html" : path;
    for (const ConsoleAsset& a : ConsoleAssets())
      if (want == a.path)
        return done(HttpReply{200, a.content_type, std::string(reinterpret_cast<const char*>(a.data), a.size),
                              {{"Cache-Control", "no-cache"},
                               // The pages load nothing from anywhere else, and run no inline script.
                               {"Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
                                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
                               {"Referrer-Policy", "no-referrer"}}});
    return done(Error(404, "no such page: " + path));
  }
  Read(request, std::move(done));
}

void Console::Read(const HttpRequest& request, std::function<void(HttpReply)> done) {
  const std::string& path = request.path;
  auto query = [&](const char* key) {
    auto it = request.query.find(key);
    return it == request.query.end() ? std::string() : it->second;
  };
  if (path == "/v1/events") {
    HttpReply r{200, "text/event-stream", "retry: 2000\n\n"};
    r.on_stream = [post = cfg_.post, alive = std::weak_ptr<bool>(alive_), this](std::shared_ptr<HttpStream> s) {
      // On the HTTP thread: the console is the protocol thread's.
      post([alive, this, s = std::move(s)]() mutable {
        if (auto a = alive.lock(); a && *a) Subscribe(std::move(s));
      });
    };
    if (!cfg_.post) return done(Error(503, "this daemon has no event stream"));
    return done(std::move(r));
  }
  if (path == "/v1/console") {
    const membership::MemberView self = members_.Self();
    const membership::Config& config = members_.config();
    return done(JsonReply(200, Json{{"name", self.name},
                                    {"addr", self.addr},
                                    {"cluster", config.cluster},
                                    {"profile", config.timing.profile},
                                    {"encrypted", static_cast<bool>(config.keyring)},
                                    {"write", cfg_.write},
                                    {"streams", streams_.size()}}));
  }
  if (path == "/v1/hooks") return done(JsonReply(200, recent_hooks_ ? recent_hooks_() : Json::array()));
  if (path == "/v1/history") return Call([](api::Request::Builder r) { r.setHistory(); }, std::move(done));
  if (path == "/v1/graph") return Call([](api::Request::Builder r) { r.setGraph(); }, std::move(done));
  if (path == "/v1/lease") return Call([](api::Request::Builder r) { r.setLease(); }, std::move(done));
  if (path == "/v1/artifacts")
    return Call([](api::Request::Builder r) { r.initArtifact().setOp("ls"); }, std::move(done));
  if (path == "/v1/diff") {
    const std::string from = query("from"), to = query("to");
    if (from.empty()) return done(Error(400, "diff needs ?from=REVISION (and &to=REVISION, else the current one)"));
    return Call(
        [&](api::Request::Builder r) {
          auto d = r.initDiff();
          d.setFrom(from);
          d.setTo(to);
          d.setHideParams(true);  // unauthenticated: params stay hidden
        },
        std::move(done));
  }
  if (path == "/v1/get") {
    const std::string revision = query("revision");
    return Call(
        [&](api::Request::Builder r) {
          auto g = r.initGet();
          g.setRevision(revision);
          g.setFormat("json");
          g.setShowParams(false);  // unauthenticated: params stay hidden
        },
        std::move(done));
  }
  done(service_.HandleHttp(path));
}

void Console::Write(const HttpRequest& request, std::function<void(HttpReply)> done) {
  static const std::vector<std::string> kWrites = {"/v1/rollout/start", "/v1/rollout/control", "/v1/rollback",
                                                   "/v1/lifecycle",     "/v1/freeze",          "/v1/unfreeze"};
  const std::string& path = request.path;
  if (std::find(kWrites.begin(), kWrites.end(), path) == kWrites.end()) {
    HttpReply r = Error(405, "POST is for the console's actions only: " + path + " is read with GET");
    r.headers.push_back({"Allow", "GET, HEAD"});
    return done(std::move(r));
  }
  if (!cfg_.write)
    return done(Error(403, "this node serves the console read-only: start starlingd with --ui-write to act "
                           "through it, or use the starling CLI"));
  if (!SameToken(request.token, cfg_.token))
    return done(Error(403, request.token.empty()
                               ? "a console action needs the X-Starling-Token header: `starling ui url` prints a "
                                 "login link"
                               : "the X-Starling-Token header does not match this node's token (`starling ui token`)"));
  if (!request.origin.empty() && request.origin != "http://" + request.host)
    return done(Error(403, "refused: the request comes from a page of " + text::Printable(text::HeadChars(request.origin, 200), true) +
                               ", not of this node"));
  if (request.content_type.rfind("application/json", 0) != 0)
    return done(Error(415, "a console action's body is JSON (Content-Type: application/json)"));
  const Json json = request.body.empty() ? Json::object() : Json::parse(request.body, nullptr, false);
  if (!json.is_object()) return done(Error(400, "the body is not a JSON object"));
  Body body{json, ""};
  // What each action asks of the local API; the refusals of the request
  // itself (a bad lifecycle, an unknown revision) are the service's.
  std::function<void(api::Request::Builder)> fill;
  if (path == "/v1/rollout/start") {
    fill = [revision = body.Text("revision"), batch = body.Text("batch"), nodes = body.Names("nodes"),
            yes = body.Flag("yes"), dry_run = body.Flag("dry_run")](api::Request::Builder r) {
      r.setRolloutStart(revision);
      r.setYes(yes);
      r.setDryRun(dry_run);
      SetNames(r.initOnly(static_cast<unsigned>(nodes.size())), nodes);
      r.setBatch(batch);
    };
  } else if (path == "/v1/rollout/control") {
    const std::string action = body.Text("action");
    if (action != "pause" && action != "resume" && action != "abort")
      body.Fail("action: expected pause, resume or abort");
    fill = [action](api::Request::Builder r) { r.setRolloutControl(action); };
  } else if (path == "/v1/rollback") {
    fill = [to = body.Text("to")](api::Request::Builder r) { r.initRollback().setTo(to); };
  } else if (path == "/v1/lifecycle") {
    std::vector<std::string> nodes = body.Names("nodes");
    if (nodes.empty()) body.Fail("nodes: name at least one node");
    fill = [nodes, to = body.Text("to")](api::Request::Builder r) {
      auto l = r.initLifecycle();
      SetNames(l.initNodes(static_cast<unsigned>(nodes.size())), nodes);
      l.setTo(to);
    };
  } else if (path == "/v1/freeze") {
    const std::string reason = body.Text("reason");
    if (reason.empty()) body.Fail("a freeze needs a reason");
    fill = [reason](api::Request::Builder r) { r.setFreeze(reason); };
  } else {
    fill = [](api::Request::Builder r) { r.setUnfreeze(); };
  }
  if (!body.error.empty()) return done(Error(400, body.error));
  Call(fill, std::move(done));
}

void Console::Call(const std::function<void(api::Request::Builder)>& fill, std::function<void(HttpReply)> done) {
  capnp::MallocMessageBuilder builder;
  api::Request::Builder r = builder.initRoot<api::Request>();
  r.setVersion(api::API_VERSION);
  fill(r);
  const Bytes request = capnp_bytes::Flat(builder);
  service_.Handle(request, [done = std::move(done)](Bytes reply) {
    Result<HttpReply> out = capnp_bytes::DecodeGuarded<HttpReply>(
        reply, 64 << 20, "reply", [](capnp::FlatArrayMessageReader& reader) -> Result<HttpReply> {
          api::Reply::Reader rep = reader.getRoot<api::Reply>();
          if (rep.hasError() && rep.getError().size() > 0) {
            return Error(StatusOf(capnp_bytes::Str(rep.getErrorCode())), capnp_bytes::Str(rep.getError()));
          }
          if (rep.which() != api::Reply::TEXT) return JsonReply(200, Json{{"ok", true}});
          Json j = Json::parse(capnp_bytes::Str(rep.getText()), nullptr, false);
          if (j.is_discarded()) return Error(500, "the daemon's reply is not JSON");
          return JsonReply(200, j);
        });
    done(out.ok() ? *out : Error(500, out.status().message()));
  });
}

void Console::Subscribe(std::shared_ptr<HttpStream> stream) {
  if (!stream->Send("event: hello\ndata: " + store::CanonicalJson(Json{{"name", members_.config().name}}) + "\n\n"))
    return;
  streams_.push_back(std::move(stream));
  if (!timer_) {
    last_ = Stamps();
    last_beat_ = clock_.Now();
    timer_ = clock_.Schedule(cfg_.coalesce, [this] { Tick(); });
  }
}

void Console::Tick() {
  timer_ = 0;
  streams_.erase(std::remove_if(streams_.begin(), streams_.end(), [](const auto& s) { return !s->open(); }),
                 streams_.end());
  if (streams_.empty()) return;  // no reader: nothing to compute until one comes
  const std::vector<uint64_t> now = Stamps();
  Json changed = Json::array();
  for (size_t i = 0; i < now.size(); ++i)
    if (i >= last_.size() || now[i] != last_[i]) changed.push_back(kTopics[i]);
  last_ = now;
  std::string chunk;
  if (!changed.empty()) {
    chunk = "event: change\ndata: " + changed.dump() + "\n\n";
  } else if (clock_.Now() - last_beat_ >= cfg_.heartbeat) {
    chunk = ": still here\n\n";
  }
  if (!chunk.empty()) {
    last_beat_ = clock_.Now();
    for (auto& s : streams_) s->Send(chunk);
  }
  timer_ = clock_.Schedule(cfg_.coalesce, [this] { Tick(); });
}

std::vector<uint64_t> Console::Stamps() const {
  uint64_t members = kFnvBasis, fresh = 0;
  for (const membership::MemberView& m : members_.Members()) {
    members = Mix(Mix(Mix(members, m.name), std::string(membership::StatusName(m.status))), m.incarnation);
    for (const auto& [k, v] : m.tags) members = Mix(Mix(members, k), v);
    fresh += soft_.Fresh(m.name);
  }
  const uint64_t nodes = Mix(Mix(members, soft_.changes()), fresh);
  const store::DesiredLog& log = replicator_.log();
  // Every entry counts, the rollout's records among them (they are no
  // revision of the document).
  const store::Hlc newest = log.last_hlc();
  const uint64_t state =
      Mix(Mix(Mix(Mix(kFnvBasis, log.Current().id), log.entries()), newest.wall), newest.logical);
  // Not the ballot: a holder raises it at every renewal.
  const Lease::View l = lease_.view();
  uint64_t lease = Mix(Mix(kFnvBasis, l.holder.value_or("")), l.quarantined);
  for (const auto& v : l.voters) lease = Mix(lease, v);
  return {members, nodes, state, lease};
}

}  // namespace starling::node
