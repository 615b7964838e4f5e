// The daemon's start-up order matters:
//   1. data dir: identity (name) and generation, so that a second daemon on
//      the same dir fails before touching the network;
//   2. gossip sockets, so that the advertised address carries the real port;
//   3. the API socket;
//   4. the Memberlist, then join (through --join seeds or, on a restart
//      without --join, through the persisted members).
// Everything after start-up runs on this one thread inside io_context::run():
// the Memberlist, both transports, the API and signal handling. Only the
// member-list writes to RocksDB happen on MemberPersister's worker thread.
#include "daemon.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>
#include <asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>

#include "agent.h"
#include "artifacts.h"
#include "metrics.h"
#include "api_server.h"
#include "api_service.h"
#include "asio_env.h"
#include "guard.h"
#include "keys.h"
#include "hook_runner.h"
#include "http_server.h"
#include "logging.h"
#include "lease.h"
#include "rollout_engine.h"
#include "soft_state.h"
#include "voters.h"
#include "member_persister.h"
#include "starling/membership/memberlist.h"
#include "starling/membership/user_channels.h"
#include "starling/store/log.h"
#include "starling/store/node_store.h"
#include "starling/store/replicator.h"

#ifndef STARLING_VERSION
#error "STARLING_VERSION must be defined by the build"
#endif

namespace starling::node {
namespace {

using namespace std::chrono_literals;

// Membership news comes in bursts (a join wave): at most one write per period.
constexpr Duration kPersistDebounce = 1s;
// Lets the API reply to `leave` reach the CLI before the loop stops.
constexpr Duration kExitGrace = 200ms;
// On top of leave_propagate_wait, in case the leave never reports back.
constexpr Duration kLeaveSlack = 5s;

int Fatal(const std::string& message) {
  std::fprintf(stderr, "starlingd: %s\n", message.c_str());
  return 1;
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

// Lease ballots in the data dir.
class StoreBallots final : public BallotStore {
 public:
  explicit StoreBallots(store::NodeStore& store) : store_(store) {}
  // Run() has checked that the ballot reads back.
  uint64_t Load() override {
    auto b = store_.LoadBallot();
    return b.ok() ? *b : 0;
  }
  Status Save(uint64_t ballot) override { return store_.SaveBallot(ballot); }

 private:
  store::NodeStore& store_;
};

// What the node agent runs, in the data dir.
class StoreApplied final : public AppliedStore {
 public:
  explicit StoreApplied(store::NodeStore& store) : store_(store) {}
  Result<std::optional<std::string>> Load() override { return store_.LoadApplied(); }
  Status Save(const std::string& json) override { return store_.SaveApplied(json); }

 private:
  store::NodeStore& store_;
};

// Blocking work (hooks, hashing artifacts) runs one job at a time on a
// worker thread; each job's `done` comes back on the protocol thread. The
// worker is detached: a job still running at exit must not hold the exit up
// (a hook is killed at its own timeout), and it posts nothing once the
// daemon has gone.
class Worker {
 public:
  explicit Worker(asio::io_context& io) : shared_(std::make_shared<Shared>(io)) {
    std::thread([s = shared_] { Loop(*s); }).detach();
  }
  ~Worker() {
    std::lock_guard lock(shared_->mu);
    shared_->stopped = true;
    shared_->cv.notify_all();
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  void Post(std::function<void()> work, std::function<void()> done) {
    std::lock_guard lock(shared_->mu);
    shared_->queue.emplace_back(std::move(work), std::move(done));
    shared_->cv.notify_one();
  }

 private:
  struct Shared {
    explicit Shared(asio::io_context& i) : io(i) {}
    asio::io_context& io;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<std::function<void()>, std::function<void()>>> queue;
    bool stopped = false;
  };
  static void Loop(Shared& s) {
    for (;;) {
      std::unique_lock lock(s.mu);
      s.cv.wait(lock, [&] { return s.stopped || !s.queue.empty(); });
      if (s.stopped) return;
      auto [work, done] = std::move(s.queue.front());
      s.queue.pop_front();
      lock.unlock();
      RunGuarded("worker job", work);
      lock.lock();
      if (s.stopped) return;
      asio::post(s.io, [done = std::move(done)] { RunGuarded("worker result", done); });
    }
  }
  std::shared_ptr<Shared> shared_;
};

// Hooks run on their own worker, so that a long hook does not hold up
// artifact work.
class ThreadHookExec final : public HookExec {
 public:
  ThreadHookExec(asio::io_context& io, std::string dir)
      : runner_(std::make_shared<HookRunner>(std::move(dir))), worker_(io) {}
  void Run(HookRequest request, std::function<void(Result<HookResult>)> done) override {
    auto result = std::make_shared<Result<HookResult>>(Status::Internal("the hook did not run"));
    worker_.Post([runner = runner_, request = std::move(request), result] { *result = runner->Run(request); },
                 [done = std::move(done), result] { done(std::move(*result)); });
  }

 private:
  std::shared_ptr<HookRunner> runner_;  // shared with a job that may outlive this
  Worker worker_;
};

class Daemon {
 public:
  explicit Daemon(const DaemonOptions& options) : opts_(options) {}
  int Run();

 private:
  void OnEvent(const membership::Event& event);
  std::vector<store::KnownMember> Snapshot() const;
  void StartJoin(const std::vector<store::KnownMember>& known);
  void BeginLeave(std::function<void(Status)> done);
  void WaitForSignal();
  void Stop(int exit_code);
  // On an HTTP server thread: asks the protocol thread and waits.
  HttpReply ServeHttp(const std::string& path);

  DaemonOptions opts_;
  std::string name_;
  std::string advertise_;
  std::unique_ptr<store::NodeStore> store_;
  std::unique_ptr<MemberPersister> persister_;
  // Declared before everything that holds Asio objects: destroyed after them.
  asio::io_context io_{1};
  std::unique_ptr<AsioClock> clock_;
  std::unique_ptr<UdpTcpTransport> transport_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<asio::signal_set> signals_;
  std::unique_ptr<SeededRandom> random_;
  std::unique_ptr<membership::Memberlist> members_;
  std::unique_ptr<store::DesiredLog> log_;
  std::unique_ptr<membership::UserChannels> channels_;
  std::unique_ptr<store::MemberlistGossip> gossip_;
  std::unique_ptr<KeyCommands> keys_;
  std::unique_ptr<store::Replicator> replicator_;
  std::unique_ptr<MemberlistLeaseNet> lease_net_;
  std::unique_ptr<BallotStore> ballots_;
  std::unique_ptr<Lease> lease_;
  std::unique_ptr<VoterKeeper> voters_;
  std::unique_ptr<SoftState> soft_;
  std::unique_ptr<ThreadHookExec> hooks_;
  std::unique_ptr<Worker> file_worker_;
  std::unique_ptr<ArtifactStore> artifact_store_;
  std::unique_ptr<Artifacts> artifacts_;
  std::unique_ptr<StoreApplied> applied_;
  std::unique_ptr<NodeAgent> agent_;
  std::unique_ptr<RolloutEngine> engine_;
  std::unique_ptr<ApiService> service_;
  std::unique_ptr<HttpServer> http_;
  std::shared_ptr<MonitorSink> monitor_;
  std::optional<Clock::TimerId> persist_timer_;
  std::optional<Time> last_persist_;
  int signals_seen_ = 0;
  bool leaving_ = false;
  bool stopped_ = false;
  int exit_code_ = 0;
};

int Daemon::Run() {
  // Before any other thread logs: the logger's sink list is not guarded.
  monitor_ = std::make_shared<MonitorSink>([this](std::function<void()> task) {
    asio::post(io_, [task = std::move(task)] { RunGuarded("monitor", task); });
  });
  spdlog::default_logger()->sinks().push_back(monitor_);
  // 1. Identity and generation.
  Result<std::unique_ptr<store::NodeStore>> opened = store::NodeStore::Open(opts_.data_dir);
  if (!opened.ok()) return Fatal(opened.status().message());
  store_ = std::move(opened).value();
  Result<std::optional<std::string>> stored = store_->LoadName();
  if (!stored.ok()) return Fatal("data dir " + opts_.data_dir + ": " + stored.status().message());
  name_ = opts_.name;
  if (stored->has_value()) {
    const std::string& owner = **stored;
    if (name_.empty()) {
      name_ = owner;
    } else if (name_ != owner) {
      return Fatal("data dir " + opts_.data_dir + " belongs to node '" + owner + "', not '" + name_ +
                   "': start with --name " + owner + " or use another --data-dir");
    }
  } else {
    if (name_.empty()) name_ = Hostname();
    if (Status s = store_->SaveName(name_); !s.ok()) return Fatal(s.message());
  }
  Result<uint32_t> generation = store_->BumpGeneration();
  if (!generation.ok()) return Fatal("data dir " + opts_.data_dir + ": " + generation.status().message());
  Result<std::vector<store::KnownMember>> known = store_->LoadMembers();
  if (!known.ok()) {
    // Only a hint for rejoining: start without it rather than not at all.
    spdlog::warn("ignoring the stored member list: {}", known.status().message());
    known = std::vector<store::KnownMember>();
  }
  persister_ = std::make_unique<MemberPersister>(*store_);
  if (Result<uint64_t> ballot = store_->LoadBallot(); !ballot.ok()) {
    // Starting from 0 could let lease ballots go backwards.
    return Fatal("data dir " + opts_.data_dir + ": " + ballot.status().message() +
                 " (if this node is not a lease voter any more, the key lease/promised may be deleted)");
  }
  uint64_t fresh_origin = 0;
  while (fresh_origin == 0) fresh_origin = RandomSeed();
  Result<uint64_t> origin = store_->LoadOrCreateOrigin(fresh_origin);
  if (!origin.ok()) return Fatal("data dir " + opts_.data_dir + ": " + origin.status().message());
  Result<std::unique_ptr<store::DesiredLog>> log = store::DesiredLog::Open(store_->log_storage(), *origin, name_);
  if (!log.ok()) return Fatal("data dir " + opts_.data_dir + ": " + log.status().message());
  log_ = std::move(log).value();

  // 2. Gossip sockets.
  membership::Config config;
  std::optional<membership::Timing> timing = membership::ProfileTiming(opts_.profile);
  if (!timing) return Fatal("unknown --profile '" + opts_.profile + "' (expected lan, wan or local)");
  config.timing = *timing;
  clock_ = std::make_unique<AsioClock>(io_);
  transport_ = std::make_unique<UdpTcpTransport>(io_, config.max_stream_bytes, config.stream_timeout);
  if (Status s = transport_->Bind(opts_.bind); !s.ok()) return Fatal(s.message());
  if (opts_.advertise) {
    advertise_ = FormatHostPort(opts_.advertise->host, opts_.advertise->port);
  } else {
    std::string host = IsUnspecifiedHost(opts_.bind.host) ? DefaultAdvertiseHost() : opts_.bind.host;
    advertise_ = FormatHostPort(host, transport_->port());
  }

  // 3. Local API socket.
  api_ = std::make_unique<ApiServer>(io_, &ApiService::ErrorReply);
  if (Status s = api_->Listen(opts_.socket, opts_.socket_gid); !s.ok()) return Fatal(s.message());

  // 3b. HTTP: bound now so that a port in use fails the start; served
  // once everything it reads exists.
  std::string http_addr;
  if (opts_.http) {
    http_ = std::make_unique<HttpServer>([this](const std::string& path) { return ServeHttp(path); });
    if (Status s = http_->Listen(*opts_.http); !s.ok()) return Fatal(s.message());
    http_addr = FormatHostPort(opts_.http->host, http_->port());
  }

  // 4. Membership.
  config.name = name_;
  config.advertise_addr = advertise_;
  config.cluster = opts_.cluster;
  config.tags = opts_.tags;
  // Generation in the high half: every start outranks all incarnations of
  // the previous run, whatever refutations it made.
  config.initial_incarnation = static_cast<uint64_t>(*generation) << 32;
  config.reap_timeout = opts_.reap_timeout;
  // The keyring in the data dir wins over --encrypt: it may have been
  // rotated since the node was first started with that flag.
  auto keyring = std::make_shared<membership::Keyring>();
  const std::string keyring_path = KeyringPath(opts_.data_dir);
  auto stored_ring = LoadKeyring(keyring_path);
  if (!stored_ring.ok()) return Fatal(stored_ring.status().message());
  if (*stored_ring) {
    *keyring = std::move(**stored_ring);
    if (opts_.encrypt && !keyring->Has(*opts_.encrypt))
      spdlog::warn("--encrypt ignored: the keyring {} holds this node's keys (rotated since?); `starling keys "
                   "install` adds one",
                   keyring_path);
    spdlog::info("gossip is encrypted: {} key(s) in {}", keyring->keys().size(), keyring_path);
  } else if (opts_.encrypt) {
    (void)keyring->Install(*opts_.encrypt);
    if (Status s = SaveKeyring(keyring_path, *keyring); !s.ok()) return Fatal(s.message());
    spdlog::info("gossip is encrypted; the key is saved in {}", keyring_path);
  } else {
    spdlog::warn("GOSSIP IS NOT ENCRYPTED: anyone who can reach {} can join this cluster and change its desired "
                 "state. Start every node with --encrypt KEY (make one with `starling keygen`); see SECURITY.md",
                 advertise_);
  }
  config.keyring = keyring;
  random_ = std::make_unique<SeededRandom>(RandomSeed());
  members_ = std::make_unique<membership::Memberlist>(std::move(config), *clock_, *transport_, *random_,
                                                      [this](const membership::Event& e) { OnEvent(e); });
  channels_ = std::make_unique<membership::UserChannels>(*members_);
  gossip_ = std::make_unique<store::MemberlistGossip>(*channels_);
  replicator_ = std::make_unique<store::Replicator>(*log_, *gossip_, *clock_, *random_);
  replicator_->Attach(*channels_);
  keys_ = std::make_unique<KeyCommands>(*channels_, keyring, [keyring_path](const membership::Keyring& ring) {
    return SaveKeyring(keyring_path, ring);
  });
  lease_net_ = std::make_unique<MemberlistLeaseNet>(*channels_);
  ballots_ = std::make_unique<StoreBallots>(*store_);
  lease_ = std::make_unique<Lease>(name_, *clock_, *random_, *lease_net_, *ballots_, LeaseConfigFor(opts_.profile));
  channels_->On(membership::Channel::kLease,
                [this](const std::string& from, ByteView data) { lease_->HandlePacket(from, data); });
  if (!opts_.lease_log.empty()) {
    lease_->OnHold([this, path = opts_.lease_log](uint64_t ballot, Duration remaining) {
      const int64_t now = clock_->WallMicros();
      const int64_t until = now + std::chrono::duration_cast<std::chrono::microseconds>(remaining).count();
      std::ofstream out(path, std::ios::app);
      out << store::Json{{"node", name_}, {"ballot", ballot}, {"from_us", now}, {"until_us", until}}.dump() << "\n";
      if (!out) spdlog::error("cannot append to the lease log {}", path);
    });
  }
  VoterConfig vcfg;
  vcfg.reap_timeout = opts_.reap_timeout;
  if (opts_.profile == "local") vcfg.spacing = 3s;
  voters_ = std::make_unique<VoterKeeper>(name_, *clock_, *members_, *replicator_, *lease_, vcfg);
  soft_ = std::make_unique<SoftState>(name_, *generation, *clock_, *channels_, opts_.profile == "local" ? 3s : 10s);
  hooks_ = std::make_unique<ThreadHookExec>(io_, opts_.hooks_dir);
  applied_ = std::make_unique<StoreApplied>(*store_);
  AgentConfig acfg;
  acfg.data_dir = opts_.data_dir;
  if (opts_.profile == "local") acfg.health_every = 2s;
  auto roles_tag = [this] {
    const membership::MemberView self = members_->Self();
    return self.tags.count("roles") ? self.tags.at("roles") : std::string();
  };
  agent_ = std::make_unique<NodeAgent>(name_, *clock_, *replicator_, *soft_, *hooks_, *applied_, roles_tag, acfg);
  engine_ = std::make_unique<RolloutEngine>(name_, *clock_, *members_, *replicator_, *soft_, *lease_);
  file_worker_ = std::make_unique<Worker>(io_);
  artifact_store_ = std::make_unique<ArtifactStore>(opts_.data_dir + "/artifacts");
  if (Status s = artifact_store_->Init(); !s.ok()) return Fatal(s.message());
  ArtifactConfig artcfg;
  artcfg.gc_grace = opts_.artifact_grace;
  artcfg.gc_every = std::clamp<Duration>(opts_.artifact_grace / 4, 1s, 60s);
  artifacts_ = std::make_unique<Artifacts>(
      name_, *clock_, *random_, *channels_, *replicator_, *artifact_store_,
      [this](std::function<void()> work, std::function<void()> done) {
        file_worker_->Post(std::move(work), std::move(done));
      },
      roles_tag, artcfg);
  artifacts_->OnReady([this] { agent_->Refresh(); });
  agent_->SetArtifacts(artifacts_.get());
  replicator_->OnChange([this] {
    voters_->Refresh();
    agent_->Refresh();
    engine_->Poke();
    artifacts_->Refresh();
  });
  service_ = std::make_unique<ApiService>(
      *members_, *replicator_, *lease_, *soft_, *clock_, DaemonFacts{opts_.data_dir, STARLING_VERSION, clock_->Now(), http_addr},
      [this](std::function<void(Status)> done) { BeginLeave(std::move(done)); });
  service_->SetMonitor([this](const std::string& level, std::function<bool(const std::string&)> deliver) {
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
  });
  service_->SetArtifacts([this](const ArtifactCommand& c, std::function<void(Result<store::Json>)> done) {
    if (c.op == "add") return artifacts_->Add(c.path, c.name, c.version, std::move(done));
    if (c.op == "ls") return artifacts_->List(std::move(done));
    done(Status::InvalidArgument("unknown artifact command '" + c.op + "' (expected add or ls)"));
  });
  service_->AddMetrics([this](MetricsText& m) {
    const Artifacts::Stats& st = artifacts_->stats();
    m.Family("starling_artifact_bytes_served_total", "counter", "Artifact bytes this node served to peers.");
    m.Sample("starling_artifact_bytes_served_total", static_cast<double>(st.bytes_served));
    m.Family("starling_artifact_bytes_fetched_total", "counter", "Artifact bytes this node fetched from peers.");
    m.Sample("starling_artifact_bytes_fetched_total", static_cast<double>(st.bytes_fetched));
    m.Family("starling_artifact_corrupt_chunks_total", "counter",
             "Artifact chunks from peers that did not match their digest (the peer is shunned).");
    m.Sample("starling_artifact_corrupt_chunks_total", static_cast<double>(st.corrupt_chunks));
    m.Family("starling_artifacts_held", "gauge", "Artifacts held complete in this node's data dir.");
    m.Sample("starling_artifacts_held", static_cast<double>(artifacts_->held()));
  });
  service_->SetKeys([this](const std::string& op, const std::string& key,
                           std::function<void(Result<store::Json>)> done) { keys_->Run(op, key, std::move(done)); });
  api_->Start([this](ByteView request, ApiServer::Respond respond, ApiServer::Push push) {
    service_->Handle(request, std::move(respond), std::move(push));
  });
  transport_->Start(
      [this](const std::string& from, ByteView packet) { members_->HandlePacket(from, packet); },
      [this](const std::string& from, ByteView request) { return members_->HandleStream(from, request); });
  if (http_) http_->Start();
  signals_ = std::make_unique<asio::signal_set>(io_, SIGINT, SIGTERM);
  WaitForSignal();

  spdlog::info(
      "starlingd {} starting: name {}, generation {}, bind {}, advertise {}, cluster {}, profile {}, "
      "data dir {}, socket {}, hooks {}, http {}",
      STARLING_VERSION, name_, *generation, FormatHostPort(opts_.bind.host, transport_->port()), advertise_,
      opts_.cluster, opts_.profile, opts_.data_dir, opts_.socket, opts_.hooks_dir, http_addr.empty() ? "off" : http_addr);
  const store::Revision current = log_->Current();
  spdlog::info("desired state: revision {}, {} log entries, digest {}",
               current.id.empty() ? "(none)" : current.id, log_->entries(), log_->digest().substr(0, 16));
  members_->Start();
  replicator_->Start();
  // Quarantined for one lease period: this node may have promised or
  // accepted grants before a crash that it no longer remembers.
  lease_->Start();
  voters_->Start();
  soft_->Start();
  agent_->Start();
  engine_->Start();
  artifacts_->Start();
  StartJoin(*known);

  for (;;) {
    try {
      io_.run();
      break;
    } catch (...) {
      // Handlers guard themselves; this is the last line of defence.
      LogUncaught("io loop");
    }
  }

  if (http_) http_->Stop();
  monitor_->Close();
  members_->Shutdown();
  persister_->Submit(Snapshot());
  persister_->Stop();
  api_->Close();
  transport_->Close();
  spdlog::info("starlingd stopped (exit code {})", exit_code_);
  return exit_code_;
}

void Daemon::OnEvent(const membership::Event& event) {
  const membership::MemberView& m = event.member;
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
      service_->SetPhase("serving");
      return;
    }
    spdlog::info("rejoining through {} known members from the data dir", views.size());
    members_->AddKnownMembers(views);
  }
  size_t n = seeds.size();
  members_->JoinWithRetry(std::move(seeds), 0, [this, n](Result<int> joined) {
    if (!leaving_) service_->SetPhase("serving");
    if (joined.ok()) {
      spdlog::debug("join done: {} of {} seeds answered", *joined, n);
      // Catch up on the desired state now rather than at the first tick.
      std::vector<store::LogGossip::Peer> peers = gossip_->LivePeers();
      if (!peers.empty()) replicator_->SyncWith(peers[random_->Uniform(peers.size())].addr);
    } else if (joined.status().code() == Status::Code::kConflict) {
      spdlog::error("cannot join the cluster as '{}': {}", name_, joined.status().message());
      Stop(1);
    } else {
      spdlog::warn("join failed: {}", joined.status().message());
    }
  });
}

void Daemon::BeginLeave(std::function<void(Status)> done) {
  if (leaving_) return done(Status::Conflict("a leave is already in progress"));
  leaving_ = true;
  service_->SetPhase("leaving");
  lease_->Release();
  Clock::TimerId backstop = clock_->Schedule(members_->config().leave_propagate_wait + kLeaveSlack, [this] {
    spdlog::warn("the leave did not report completion in time; exiting anyway");
    Stop(0);
  });
  members_->Leave([this, done, backstop] {
    clock_->Cancel(backstop);
    done(Status::Ok());
    clock_->Schedule(kExitGrace, [this] { Stop(0); });
  });
}

HttpReply Daemon::ServeHttp(const std::string& path) {
  auto reply = std::make_shared<std::promise<HttpReply>>();
  std::future<HttpReply> answer = reply->get_future();
  asio::post(io_, [this, path, reply] {
    HttpReply r{500, "application/json", "{\"error\":\"internal error\"}\n"};
    RunGuarded("http request", [&] { r = service_->HandleHttp(path); });
    reply->set_value(std::move(r));
  });
  if (answer.wait_for(std::chrono::seconds(2)) != std::future_status::ready)
    return {503, "application/json", "{\"error\":\"the daemon did not answer in time\"}\n"};
  return answer.get();
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
        Stop(1);
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

int RunDaemon(const DaemonOptions& options) {
  Daemon daemon(options);
  return daemon.Run();
}

}  // namespace starling::node
