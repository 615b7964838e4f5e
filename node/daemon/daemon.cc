// The daemon's start-up order matters:
//   1. data dir: identity (name) and generation, so that a second daemon on
//      the same dir fails before touching the network;
//   2. gossip sockets, so that the advertised address carries the real port;
//   3. the API socket and the HTTP listener;
//   4. the Memberlist and the node's protocols (NodeCore), then join (through
//      --join seeds or, on a restart without --join, through the persisted
//      members).
// Everything after start-up runs on this one thread inside io_context::run():
// the Memberlist, the protocols, both transports, the API and signal
// handling. Hooks, artifact files and the parsing of applied documents run on
// worker threads (host/worker.h),
// the member-list writes to RocksDB on MemberPersister's.
#include "daemon.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

#include "api_server.h"
#include "api_service.h"
#include "asio_env.h"
#include "agent_upgrade.h"
#include "data_format.h"
#include "file_artifact_store.h"
#include "guard.h"
#include "console.h"
#include "http_server.h"
#include "interfaces.h"
#include "keyring_file.h"
#include "logging.h"
#include "member_persister.h"
#include "metrics.h"
#include "node_core.h"
#include "service_manager.h"
#include "starling/membership/memberlist.h"
#include "starling/store/document.h"
#include "starling/store/log.h"
#include "starling/store/node_store.h"
#include "starling/version.h"
#include "store_adapters.h"
#include "trust.h"
#include "worker.h"


namespace starling::node {
namespace {

using namespace std::chrono_literals;

// Membership news comes in bursts (a join wave): at most one write per period.
constexpr Duration kPersistDebounce = 1s;
// Lets the API reply to `leave` reach the CLI before the loop stops.
constexpr Duration kExitGrace = 200ms;
// On top of leave_propagate_wait, in case the leave never reports back.
constexpr Duration kLeaveSlack = 5s;
// How long an HTTP request waits for the protocol thread.
constexpr auto kHttpAnswerWait = std::chrono::seconds(2);

// What the daemon will run, checked before anything starts: a hooks dir
// another user can write, or an event handler that is missing or untrusted,
// stops the start with its name rather than failing at the first hook or
// event. A hooks dir that does not exist yet is fine (no hook runs).
Status CheckRunnables(const DaemonOptions& o) {
  if (Status s = CheckTrusted(o.hooks_dir, "hooks dir"); !s.ok() && s.code() != Status::Code::kNotFound) return s;
  for (const DaemonOptions::EventHandler& h : o.event_handlers) {
    const std::filesystem::path path(h.path);
    HookRunner check(path.parent_path().string());
    check.FollowSymlinksOut(true);
    if (Result<std::string> r = check.Resolve(path.filename().string()); !r.ok())
      return Status::InvalidArgument("--event-handler " + h.path + ": " + r.status().message());
  }
  return Status::Ok();
}

int Fatal(const std::string& message) {
  std::fprintf(stderr, "starlingd: %s\n", message.c_str());
  return kExitFailed;
}

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "starling";
  return buf;
}

uint64_t RandomSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
         static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

class Daemon {
 public:
  explicit Daemon(const DaemonOptions& options) : opts_(options), exe_(KeptExecutable()) {
    if (exe_.empty())
      if (Result<std::string> e = OwnExecutable(); e.ok()) exe_ = *e;
  }
  int Run();

 private:
  // The start-up steps, in order; each fails with a message naming what is at fault.
  Status OpenDataDir();
  Status BindSockets();
  Result<std::shared_ptr<membership::Keyring>> OpenKeyring();
  Result<membership::Tags> StartTags();
  Status StartProtocols();
  void ServeApi();
  void Serve();
  void Shutdown();

  void OnEvent(const membership::Event& event);
  std::vector<store::KnownMember> Snapshot() const;
  void StartJoin(const std::vector<store::KnownMember>& known);
  // Up: /health says serving, and a restart into a new binary took.
  void Serving();
  void BeginLeave(std::function<void(Status)> done);
  void WaitForSignal();
  void Stop(int exit_code);
  // Runs `task` on the protocol thread.
  Worker::Post Post() {
    return [this](std::function<void()> task) { asio::post(io_, std::move(task)); };
  }
  // On an HTTP server thread: asks the protocol thread and waits.
  void ServeHttp(HttpRequest request, std::function<void(HttpReply)> done);
  Status Monitor(const std::string& level, std::function<bool(const std::string&)> deliver);
  void AddArtifactMetrics(MetricsText& m) const;
  void AddConnectionMetrics(MetricsText& m) const;
  void AppendLeaseHold(uint64_t ballot, Duration remaining) const;

  DaemonOptions opts_;
  std::string name_;
  std::string advertise_;
  std::string http_addr_;
  uint32_t generation_ = 0;
  std::vector<store::KnownMember> known_;
  std::unique_ptr<store::NodeStore> store_;
  std::unique_ptr<MemberPersister> persister_;
  // Declared before everything that holds Asio objects: destroyed after them.
  asio::io_context io_{1};
  membership::Config config_;
  std::unique_ptr<AsioClock> clock_;
  std::unique_ptr<UdpTcpTransport> transport_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<asio::signal_set> signals_;
  std::unique_ptr<SeededRandom> random_;
  std::unique_ptr<membership::Memberlist> members_;
  std::unique_ptr<store::DesiredLog> log_;
  std::unique_ptr<StoreBallots> ballots_;
  std::unique_ptr<StoreApplied> applied_;
  std::unique_ptr<ThreadHookExec> hooks_;
  std::vector<std::unique_ptr<ThreadHookExec>> handler_execs_;  // one per --event-handler
  std::unique_ptr<Worker> file_worker_;
  std::unique_ptr<Worker> parse_worker_;
  std::unique_ptr<AgentUpgrader> upgrader_;
  std::string exe_;  // the binary this process started from  // applies' documents: not behind a long artifact hash
  std::unique_ptr<FileArtifactStore> artifact_store_;
  std::unique_ptr<NodeCore> core_;
  std::unique_ptr<ApiService> service_;
  std::unique_ptr<Console> console_;
  std::unique_ptr<HttpServer> http_;
  std::shared_ptr<MonitorSink> monitor_;
  std::optional<Clock::TimerId> persist_timer_;
  std::optional<Time> last_persist_;
  int signals_seen_ = 0;
  bool serving_ = false;  // READY=1 sent
  bool leaving_ = false;
  bool stopped_ = false;
  int exit_code_ = kExitOk;
};

int Daemon::Run() {
  // Before any other thread logs: the logger's sink list is not guarded.
  monitor_ = std::make_shared<MonitorSink>([this](std::function<void()> task) {
    asio::post(io_, [task = std::move(task)] { RunGuarded("monitor", task); });
  });
  spdlog::default_logger()->sinks().push_back(monitor_);
  for (auto step : {&Daemon::OpenDataDir, &Daemon::BindSockets, &Daemon::StartProtocols})
    if (Status s = (this->*step)(); !s.ok()) return Fatal(s.message());
  ServeApi();
  Serve();
  Shutdown();
  return exit_code_;
}

// 1. Identity, generation, what this node remembers.
Status Daemon::OpenDataDir() {
  const std::string where = "data dir " + opts_.data_dir + ": ";
  // Before anything writes to it: a dir of a newer format is left as it is.
  Result<uint32_t> format = ReadDataFormat(opts_.data_dir);
  if (!format.ok()) return format.status();
  if (Status s = CheckDataFormat(opts_.data_dir, DataFormat(), ReleaseVersion()); !s.ok()) return s;
  if (Status s = SecureDataDir(opts_.data_dir); !s.ok()) return s;
  if (Status s = CheckRunnables(opts_); !s.ok()) return s;
  Result<std::unique_ptr<store::NodeStore>> opened = store::NodeStore::Open(opts_.data_dir);
  if (!opened.ok()) return opened.status();
  store_ = std::move(opened).value();
  Result<std::optional<std::string>> stored = store_->LoadName();
  if (!stored.ok()) return Status::IoError(where + stored.status().message());
  name_ = opts_.name;
  if (stored->has_value()) {
    const std::string& owner = **stored;
    if (name_.empty()) {
      name_ = owner;
    } else if (name_ != owner) {
      return Status::InvalidArgument("data dir " + opts_.data_dir + " belongs to node '" + owner + "', not '" +
                                     name_ + "': start with --name " + owner + " or use another --data-dir");
    }
  } else {
    if (name_.empty()) name_ = Hostname();
    if (Status s = store_->SaveName(name_); !s.ok()) return s;
  }
  if (Status s = MigrateDataDir(*store_, opts_.data_dir, *format, DataFormat(), ReleaseVersion()); !s.ok())
    return s;
  Result<uint32_t> generation = store_->BumpGeneration();
  if (!generation.ok()) return Status::IoError(where + generation.status().message());
  generation_ = *generation;
  Result<std::vector<store::KnownMember>> known = store_->LoadMembers();
  if (known.ok()) {
    known_ = std::move(known).value();
  } else {
    // Only a hint for rejoining: start without it rather than not at all.
    spdlog::warn("ignoring the stored member list: {}", known.status().message());
  }
  persister_ = std::make_unique<MemberPersister>(*store_);
  if (Result<uint64_t> ballot = store_->LoadBallot(); !ballot.ok()) {
    // Starting from 0 could let lease ballots go backwards.
    return Status::IoError(where + ballot.status().message() +
                           " (if this node is not a lease voter any more, the key lease/promised may be deleted)");
  }
  uint64_t fresh_origin = 0;
  while (fresh_origin == 0) fresh_origin = RandomSeed();
  Result<uint64_t> origin = store_->LoadOrCreateOrigin(fresh_origin);
  if (!origin.ok()) return Status::IoError(where + origin.status().message());
  Result<std::unique_ptr<store::DesiredLog>> log = store::DesiredLog::Open(store_->log_storage(), *origin, name_);
  if (!log.ok()) return Status::IoError(where + log.status().message());
  log_ = std::move(log).value();
  return Status::Ok();
}

// 2 and 3. Gossip sockets, the API socket, the HTTP listener: bound now so
// that an address in use fails the start; served once everything they reach exists.
Status Daemon::BindSockets() {
  std::optional<membership::Timing> timing = membership::ProfileTiming(opts_.profile);
  if (!timing) return Status::InvalidArgument("unknown --profile '" + opts_.profile + "' (expected lan, wan or local)");
  config_.timing = *timing;
  clock_ = std::make_unique<AsioClock>(io_);
  transport_ = std::make_unique<UdpTcpTransport>(io_, config_.max_stream_bytes, config_.stream_timeout);
  if (Status s = transport_->Bind(opts_.bind); !s.ok()) return s;
  if (opts_.advertise) {
    advertise_ = FormatHostPort(opts_.advertise->host, opts_.advertise->port);
  } else {
    std::string host = IsUnspecifiedHost(opts_.bind.host) ? DefaultAdvertiseHost() : opts_.bind.host;
    advertise_ = FormatHostPort(host, transport_->port());
  }
  // A restart into a new binary binds the same addresses, also where they
  // were chosen at random (port 0): peers know this member there.
  KeepOption("--bind", FormatHostPort(opts_.bind.host, transport_->port()));
  api_ = std::make_unique<ApiServer>(io_, [](const std::string& message) { return ApiService::ErrorReply(message); });
  if (Status s = api_->Listen(opts_.socket, opts_.socket_gid); !s.ok()) return s;
  if (opts_.http) {
    http_ = std::make_unique<HttpServer>(
        [this](HttpRequest request, std::function<void(HttpReply)> done) { ServeHttp(std::move(request), std::move(done)); });
    if (Status s = http_->Listen(*opts_.http); !s.ok()) return s;
    http_addr_ = FormatHostPort(opts_.http->host, http_->port());
    KeepOption("--http", http_addr_);
    if (!IsLoopbackHost(opts_.http->host))
      spdlog::warn("HTTP IS SERVED OFF LOOPBACK on {}: anyone who reaches it reads the members, node reports and the "
                   "desired state (param values hidden), without a password; bind --http to 127.0.0.1 "
                   "unless every host that reaches it is trusted with that (see SECURITY.md)",
                   http_addr_);
  }
  return Status::Ok();
}

// The keyring in the data dir wins over --encrypt: it may have been rotated
// since the node was first started with that flag.
Result<std::shared_ptr<membership::Keyring>> Daemon::OpenKeyring() {
  auto keyring = std::make_shared<membership::Keyring>();
  const std::string path = KeyringPath(opts_.data_dir);
  auto stored = LoadKeyring(path);
  if (!stored.ok()) return stored.status();
  if (*stored) {
    *keyring = std::move(**stored);
    if (opts_.encrypt && !keyring->Has(*opts_.encrypt))
      spdlog::warn("{} ignored: the keyring {} holds this node's keys and not that one (rotated since? then the "
                   "key file is stale: only a node started afresh reads it); `starling keys install` adds one",
                   opts_.encrypt_source, path);
    spdlog::info("gossip is encrypted: {} key(s) in {}", keyring->keys().size(), path);
  } else if (opts_.encrypt) {
    (void)keyring->Install(*opts_.encrypt);
    if (Status s = SaveKeyring(path, *keyring); !s.ok()) return s;
    spdlog::info("gossip is encrypted; the key is saved in {}", path);
  } else {
    spdlog::warn("GOSSIP IS NOT ENCRYPTED: anyone who can reach {} can join this cluster and change its desired "
                 "state. Start every node with --encrypt KEY (make one with `starling keygen`); see SECURITY.md",
                 advertise_);
  }
  return keyring;
}

// The tags last set with `starling tags` come back; a --tag on this start
// names a value now, so it wins for its key.
Result<membership::Tags> Daemon::StartTags() {
  membership::Tags tags;
  Result<std::optional<std::string>> stored = store_->LoadTags();
  if (!stored.ok()) return Status::IoError("data dir " + opts_.data_dir + ": " + stored.status().message());
  if (*stored) {
    store::Json json = store::Json::parse(**stored, nullptr, false);
    if (!json.is_object())
      return Status::Corruption("data dir " + opts_.data_dir + ": the stored tags are not a JSON object");
    for (const auto& [key, value] : json.items()) {
      if (!value.is_string())
        return Status::Corruption("data dir " + opts_.data_dir + ": the stored tag '" + key + "' is not a string");
      tags[key] = value.get<std::string>();
    }
  }
  for (const auto& [key, value] : opts_.tags) {
    auto it = tags.find(key);
    if (it != tags.end() && it->second != value)
      spdlog::info("tag {}: --tag {}={} replaces the stored value '{}'", key, key, value, it->second);
    tags[key] = value;
  }
  return tags;
}

// 4. Membership and the node's protocols.
Status Daemon::StartProtocols() {
  config_.name = name_;
  config_.advertise_addr = advertise_;
  config_.cluster = opts_.cluster;
  Result<membership::Tags> tags = StartTags();
  if (!tags.ok()) return tags.status();
  config_.tags = std::move(tags).value();
  // Generation in the high half: every start outranks all incarnations of
  // the previous run, whatever refutations it made.
  config_.initial_incarnation = static_cast<uint64_t>(generation_) << 32;
  config_.reap_timeout = opts_.reap_timeout;
  config_.join_retry_interval = opts_.retry_interval;
  config_.protocol = Protocol(opts_.protocol);
  config_.release = ReleaseVersion();
  Result<std::shared_ptr<membership::Keyring>> keyring = OpenKeyring();
  if (!keyring.ok()) return keyring.status();
  config_.keyring = *keyring;
  random_ = std::make_unique<SeededRandom>(RandomSeed());
  members_ = std::make_unique<membership::Memberlist>(config_, *clock_, *transport_, *random_,
                                                      [this](const membership::Event& e) { OnEvent(e); });
  ballots_ = std::make_unique<StoreBallots>(*store_);
  applied_ = std::make_unique<StoreApplied>(*store_);
  hooks_ = std::make_unique<ThreadHookExec>(Post(), opts_.hooks_dir, opts_.hooks_follow_symlinks);
  file_worker_ = std::make_unique<Worker>(Post());
  parse_worker_ = std::make_unique<Worker>(Post());
  artifact_store_ = std::make_unique<FileArtifactStore>(opts_.data_dir + "/artifacts");
  if (Status s = artifact_store_->Init(); !s.ok()) return s;

  NodeOptions options;
  options.name = name_;
  options.generation = generation_;
  options.profile = opts_.profile;
  options.reap_timeout = opts_.reap_timeout;
  options.founder = opts_.join.empty() && std::none_of(known_.begin(), known_.end(), [this](const store::KnownMember& k) {
                      return k.name != name_ && k.addr != advertise_;
                    });
  options.agent.data_dir = opts_.data_dir;
  options.agent.health_every = NodeTimingFor(opts_.profile).health_every;
  options.artifacts.gc_grace = opts_.artifact_grace;
  options.artifacts.gc_every = std::clamp<Duration>(opts_.artifact_grace / 4, 1s, 60s);
  AgentUpgrader::Options up;
  up.exe = exe_;
  up.data_dir = opts_.data_dir;
  up.version = ReleaseVersion();
  up.stop = [this] {
    // No leave: the members see a restart, as after a crash, and the
    // services keep running.
    spdlog::info("stopping to restart into the new binary");
    if (opts_.supervised) NotifyStopping("restarting into the new binary (exit 75)");
    Stop(kExitRestart);
  };
  up.step_down = [this](uint32_t format) { return StepDataDirDown(*store_, opts_.data_dir, format); };
  upgrader_ = std::make_unique<AgentUpgrader>(std::move(up), Post());
  NodeSeams seams{*clock_, *random_, *members_, *log_, *ballots_, *applied_, *hooks_};
  // Each handler runs as a hook from its own directory (checked with the
  // data dir, by CheckRunnables).
  for (const DaemonOptions::EventHandler& h : opts_.event_handlers) {
    const std::filesystem::path path(h.path);
    handler_execs_.push_back(std::make_unique<ThreadHookExec>(Post(), path.parent_path().string(), true));
    seams.event_handlers.push_back({h.filters, h.path, path.filename().string(), handler_execs_.back().get()});
  }
  options.events.extra_env["STARLING_SOCKET"] = opts_.socket;
  if (opts_.profile == "local") {
    options.events.quiescent = std::chrono::milliseconds(200);
    options.events.coalesce = std::chrono::seconds(1);
  }
  seams.agent_binary = upgrader_.get();
  seams.artifact_store = artifact_store_.get();
  seams.offload = [this](std::function<void()> work, std::function<void()> done) {
    file_worker_->Run(std::move(work), std::move(done));
  };
  seams.keyring = *keyring;
  seams.persist_keyring = [path = KeyringPath(opts_.data_dir)](const membership::Keyring& ring) {
    return SaveKeyring(path, ring);
  };
  core_ = std::make_unique<NodeCore>(std::move(options), std::move(seams));
  if (!opts_.lease_log.empty())
    core_->lease().OnHold([this](uint64_t ballot, Duration remaining) { AppendLeaseHold(ballot, remaining); });
  return Status::Ok();
}

// The local API and HTTP: what each request means is ApiService's.
void Daemon::ServeApi() {
  std::string token;
  if (Result<std::string> t = LoadOrMakeUiToken(opts_.data_dir); t.ok()) {
    token = *t;
  } else {
    spdlog::error("the console serves read-only: {}", t.status().message());
  }
  service_ = std::make_unique<ApiService>(
      *members_, core_->replicator(), core_->lease(), core_->soft(), *clock_,
      DaemonFacts{opts_.data_dir, ReleaseVersion(), clock_->Now(), http_addr_, BuildId(), getpid(), token,
                  opts_.ui_write && !token.empty()},
      [this](std::function<void(Status)> done) { BeginLeave(std::move(done)); });
  console_ = std::make_unique<Console>(*service_, *clock_, *members_, core_->replicator(), core_->soft(),
                                       core_->lease(), [a = &core_->agent()] { return a->RecentHooks(); },
                                       ConsoleConfig{opts_.ui_write && !token.empty(), token,
                                                     std::chrono::milliseconds(250), std::chrono::seconds(15),
                                                     Post()});
  service_->SetMonitor([this](const std::string& level, std::function<bool(const std::string&)> deliver) {
    return Monitor(level, std::move(deliver));
  });
  service_->SetEvents(&core_->events(), &core_->queries());
  service_->SetArtifacts([a = core_->artifacts()](const ArtifactCommand& c,
                                                  std::function<void(Result<store::Json>)> done) {
    if (c.op == "add") return a->Add(c.file, c.path, c.name, c.version, std::move(done));
    if (c.op == "ls") return a->List(std::move(done));
    done(Status::InvalidArgument("unknown artifact command '" + c.op + "' (expected add or ls)"));
  });
  service_->SetOffload([this](std::function<void()> work, std::function<void()> done) {
    parse_worker_->Run(std::move(work), std::move(done));
  });
  service_->AddMetrics([this](MetricsText& m) { AddArtifactMetrics(m); });
  service_->AddMetrics([this](MetricsText& m) { AddConnectionMetrics(m); });
  service_->SetSaveTags([this](const membership::Tags& tags) {
    store::Json json = store::Json::object();
    for (const auto& [key, value] : tags) json[key] = value;
    return store_->SaveTags(json.dump());
  });
  service_->SetKeys([k = core_->keys()](const std::string& op, const std::string& key, bool local,
                                        std::function<void(Result<store::Json>)> done) {
    k->Run(op, key, local, std::move(done));
  });
  api_->Start([this](ByteView request, ApiServer::Respond respond, ApiServer::Push push, OpenFile file) {
    service_->Handle(request, std::move(respond), std::move(push), std::move(file));
  });
}

// Everything starts, then the one protocol thread runs until Stop().
void Daemon::Serve() {
  transport_->Start(
      [this](const std::string& from, ByteView packet) { members_->HandlePacket(from, packet); },
      [this](const std::string& from, ByteView request, std::function<void(Bytes)> reply) {
        members_->HandleStream(from, request, std::move(reply));
      });
  if (http_) http_->Start();
  signals_ = std::make_unique<asio::signal_set>(io_, SIGINT, SIGTERM);
  WaitForSignal();

  spdlog::info(
      "starlingd {} starting: name {}, generation {}, bind {}, advertise {}, cluster {}, profile {}, "
      "data dir {}, socket {}, hooks {}, http {}",
      ReleaseVersion(), name_, generation_, FormatHostPort(opts_.bind.host, transport_->port()), advertise_,
      opts_.cluster, opts_.profile, opts_.data_dir, opts_.socket, opts_.hooks_dir,
      http_addr_.empty() ? "off" : http_addr_);
  const store::Revision current = log_->Current();
  spdlog::info("desired state: revision {}, {} log entries, digest {}",
               current.id.empty() ? "(none)" : current.id, log_->entries(), log_->digest().substr(0, 16));
  members_->Start();
  core_->Start();
  StartJoin(known_);

  for (;;) {
    try {
      io_.run();
      break;
    } catch (...) {
      // Handlers guard themselves; this is the last line of defence.
      LogUncaught("io loop");
    }
  }
}

void Daemon::Shutdown() {
  if (http_) http_->Stop();
  monitor_->Close();
  members_->Shutdown();
  persister_->Submit(Snapshot());
  persister_->Stop();
  api_->Close();
  transport_->Close();
  spdlog::info("starlingd stopped (exit code {})", exit_code_);
}

Status Daemon::Monitor(const std::string& level, std::function<bool(const std::string&)> deliver) {
  static const std::map<std::string, spdlog::level::level_enum> kLevels = {{"trace", spdlog::level::trace},
                                                                           {"debug", spdlog::level::debug},
                                                                           {"info", spdlog::level::info},
                                                                           {"warn", spdlog::level::warn},
                                                                           {"error", spdlog::level::err}};
  auto it = kLevels.find(level);
  if (it == kLevels.end())
    return Status::InvalidArgument("unknown log level '" + level + "' (expected trace, debug, info, warn or error)");
  monitor_->Subscribe(it->second, std::move(deliver));
  spdlog::info("a monitor connected at level {} ({} now)", level, monitor_->subscribers());
  return Status::Ok();
}

void Daemon::AddArtifactMetrics(MetricsText& m) const {
  const Artifacts& artifacts = *core_->artifacts();
  const Artifacts::Stats& st = artifacts.stats();
  m.Family("starling_artifact_bytes_served_total", "counter", "Artifact bytes this node served to peers.");
  m.Sample("starling_artifact_bytes_served_total", static_cast<double>(st.bytes_served));
  m.Family("starling_artifact_bytes_fetched_total", "counter", "Artifact bytes this node fetched from peers.");
  m.Sample("starling_artifact_bytes_fetched_total", static_cast<double>(st.bytes_fetched));
  m.Family("starling_artifact_corrupt_chunks_total", "counter",
           "Artifact chunks from peers that did not match their digest (the peer is shunned).");
  m.Sample("starling_artifact_corrupt_chunks_total", static_cast<double>(st.corrupt_chunks));
  m.Family("starling_artifact_corrupt_copies_total", "counter",
           "Complete artifact copies on this node's disk found changed before an install (removed, fetched again).");
  m.Sample("starling_artifact_corrupt_copies_total", static_cast<double>(st.corrupt_copies));
  m.Family("starling_artifacts_held", "gauge", "Artifacts held complete in this node's data dir.");
  m.Sample("starling_artifacts_held", static_cast<double>(artifacts.held()));
}

void Daemon::AddConnectionMetrics(MetricsText& m) const {
  struct Listener {
    const char* name;
    size_t open;
    std::map<std::string, uint64_t> refused;
  };
  std::vector<Listener> listeners = {{"gossip", transport_->inbound_open(), transport_->inbound_refused()},
                                     {"api", api_->open(), api_->refused()}};
  if (http_) {
    const HttpServer::Stats http = http_->stats();
    listeners.push_back({"http", http.open, http.refused});
  }
  m.Family("starling_connections_open", "gauge", "Connections open now, by listener.");
  for (const auto& l : listeners) m.Sample("starling_connections_open", {{"listener", l.name}}, static_cast<double>(l.open));
  m.Family("starling_connections_refused_total", "counter",
           "Connections refused or closed by a limit, by listener and reason (evicted: one waiting for its request "
           "closed to make room; full: no room; idle, timeout: no whole request in time; write_timeout: the reply "
           "not taken; too_large, malformed).");
  for (const auto& l : listeners)
    for (const auto& [reason, n] : l.refused)
      m.Sample("starling_connections_refused_total", {{"listener", l.name}, {"reason", reason}}, static_cast<double>(n));
}

void Daemon::AppendLeaseHold(uint64_t ballot, Duration remaining) const {
  const int64_t now = clock_->WallMicros();
  const int64_t until = now + std::chrono::duration_cast<std::chrono::microseconds>(remaining).count();
  std::ofstream out(opts_.lease_log, std::ios::app);
  out << store::Json{{"node", name_}, {"ballot", ballot}, {"from_us", now}, {"until_us", until}}.dump() << "\n";
  if (!out) spdlog::error("cannot append to the lease log {}", opts_.lease_log);
}

void Daemon::OnEvent(const membership::Event& event) {
  const membership::MemberView& m = event.member;
  if (core_) core_->OnMemberEvent(event);
  spdlog::info("{} {}: {} at {}, incarnation {}", membership::EventName(event.type), m.name,
               membership::StatusName(m.status), m.addr, m.incarnation);
  // Our own events do not change the persisted set (which excludes us).
  if (m.name == name_ || persist_timer_) return;
  // Leading edge at once (a node killed just after joining must still find
  // its cluster on restart), then at most one write per debounce period. Even
  // "at once" goes through the clock: the Memberlist is mid-update while it
  // reports an event, so it is read only after the event handler returns.
  Duration wait = Duration::zero();
  if (last_persist_) wait = std::max(Duration::zero(), *last_persist_ + kPersistDebounce - clock_->Now());
  persist_timer_ = clock_->Schedule(wait, [this] {
    persist_timer_.reset();
    last_persist_ = clock_->Now();
    persister_->Submit(Snapshot());
  });
}

std::vector<store::KnownMember> Daemon::Snapshot() const {
  std::vector<store::KnownMember> out;
  for (const membership::MemberView& m : members_->Members()) {
    // Left members said goodbye: they are no use for rejoining.
    if (m.name == name_ || m.status == membership::MemberStatus::kLeft) continue;
    out.push_back(store::KnownMember{m.name, m.addr});
  }
  return out;
}

void Daemon::Serving() {
  if (!serving_) {
    serving_ = true;
    NotifyReady("serving as " + name_ + " in cluster " + opts_.cluster + " at " + advertise_);
  }
  service_->SetPhase("serving");
  upgrader_->Served();
}

void Daemon::StartJoin(const std::vector<store::KnownMember>& known) {
  std::vector<std::string> seeds = opts_.join;
  if (seeds.empty()) {
    std::vector<membership::MemberView> views;
    for (const store::KnownMember& k : known) {
      if (k.name == name_ || k.addr == advertise_) continue;
      membership::MemberView view;
      view.name = k.name;
      view.addr = k.addr;
      view.status = membership::MemberStatus::kFailed;
      views.push_back(std::move(view));
      seeds.push_back(k.addr);
    }
    if (views.empty()) {
      spdlog::info("no --join and no known members: waiting for others to join through {}", advertise_);
      Serving();
      return;
    }
    spdlog::info("rejoining through {} known members from the data dir", views.size());
    NotifyStatus("rejoining through " + std::to_string(views.size()) + " known members from the data dir");
    members_->AddKnownMembers(views);
  } else {
    NotifyStatus("joining through " + std::to_string(seeds.size()) + " seed(s); retrying every " +
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(opts_.retry_interval).count()) +
                 " ms until one answers");
  }
  size_t n = seeds.size();
  // Joining through the data dir's known members never gives up: they may
  // all be down for a while, and the node is a member already.
  const int attempts = opts_.join.empty() ? 0 : static_cast<int>(opts_.retry_max);
  members_->JoinWithRetry(std::move(seeds), attempts, [this, n, attempts](Result<int> joined) {
    if (!joined.ok() && attempts > 0 && joined.status().code() == Status::Code::kUnavailable) {
      spdlog::error("no seed answered in {} join attempts (--retry-max): {}; exiting", attempts,
                    joined.status().message());
      return Stop(kExitFailed);
    }
    if (!leaving_ && joined.status().code() != Status::Code::kConflict) Serving();
    if (joined.ok()) {
      spdlog::debug("join done: {} of {} seeds answered", *joined, n);
      // Catch up on the desired state now rather than at the first tick.
      std::vector<store::LogGossip::Peer> peers = core_->gossip().LivePeers();
      if (!peers.empty()) core_->replicator().SyncWith(peers[random_->Uniform(peers.size())].addr);
    } else if (joined.status().code() == Status::Code::kConflict) {
      spdlog::error("cannot join the cluster as '{}': {}", name_, joined.status().message());
      Stop(kExitFailed);
    } else {
      spdlog::warn("join failed: {}", joined.status().message());
    }
  });
}

void Daemon::BeginLeave(std::function<void(Status)> done) {
  if (leaving_) return done(Status::Conflict("a leave is already in progress"));
  leaving_ = true;
  NotifyStopping("leaving the cluster");
  service_->SetPhase("leaving");
  core_->lease().Release();
  Clock::TimerId backstop = clock_->Schedule(members_->config().leave_propagate_wait + kLeaveSlack, [this] {
    spdlog::warn("the leave did not report completion in time; exiting anyway");
    Stop(kExitOk);
  });
  members_->Leave([this, done, backstop] {
    clock_->Cancel(backstop);
    done(Status::Ok());
    clock_->Schedule(kExitGrace, [this] { Stop(kExitOk); });
  });
}

// On the HTTP thread: the answer is made on the protocol thread.
void Daemon::ServeHttp(HttpRequest request, std::function<void(HttpReply)> done) {
  asio::post(io_, [this, request = std::move(request), done = std::move(done)]() mutable {
    // Answered once: by the console, or with 500 when it threw before it did.
    auto once = std::make_shared<std::function<void(HttpReply)>>(std::move(done));
    auto answer = [once](HttpReply r) {
      if (auto d = std::exchange(*once, nullptr)) d(std::move(r));
    };
    bool threw = true;
    RunGuarded("http request", [&] {
      console_->Serve(request, answer);
      threw = false;
    });
    if (threw) answer(HttpReply{500, "application/json", "{\"error\":\"internal error\"}\n"});
  });
}

void Daemon::WaitForSignal() {
  signals_->async_wait([this](const std::error_code& ec, int signo) {
    if (ec) return;
    RunGuarded("signal handler", [&] {
      if (signals_seen_++ == 0) {
        spdlog::info("received {}: leaving gracefully (send it again to exit at once)", strsignal(signo));
        BeginLeave([](Status) {});
        WaitForSignal();
      } else {
        spdlog::warn("received {} again: exiting without finishing the leave", strsignal(signo));
        Stop(kExitFailed);
      }
    });
  });
}

void Daemon::Stop(int exit_code) {
  if (!stopped_) {
    stopped_ = true;
    exit_code_ = exit_code;
  }
  io_.stop();
}

}  // namespace

int CheckConfig(const DaemonOptions& o) {
  if (Status s = CheckRunnables(o); !s.ok()) {
    std::fprintf(stderr, "starlingd: %s\n", s.message().c_str());
    return kExitUsage;
  }
  if (Status s = CheckDataFormat(o.data_dir, DataFormat(), ReleaseVersion()); !s.ok()) return Fatal(s.message());
  std::string read;
  for (const std::string& f : o.config_files) read += (read.empty() ? "" : ", ") + f;
  std::printf("# starlingd %s: the settings these flags and config files make\n%s", ReleaseVersion(),
              o.effective_config.c_str());
  std::fprintf(stderr, "starlingd: configuration OK (%s%s)\n", read.empty() ? "no config file" : "read ",
               read.c_str());
  return kExitOk;
}

int RunDaemon(const DaemonOptions& options) {
  Daemon daemon(options);
  return daemon.Run();
}

}  // namespace starling::node
