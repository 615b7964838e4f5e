// starling-serf-bench: Starling and Serf side by side on 127.0.0.1.
//
// For each N it starts N starlingd, measures them, stops them, then does the
// same with N `serf agent`, both with the same timing profile (memberlist's
// lan preset by default). Measured for both:
//   join      - from the join requests (all agents but the first join it at
//               once, each on its own thread) to every agent listing N alive
//               (--join-trials waves from fresh agents; median and max)
//   idle      - resident memory and CPU seconds per agent over a quiet window,
//               and bytes sent per agent per second (each tool's own counters:
//               starlingd's API counters; Serf's memberlist.udp.sent and
//               memberlist.tcp.sent metrics, received by a statsd listener
//               per agent)
//   change    - `apply` on a random node vs a user event (`serf event`,
//               not coalesced): from the command returning to every node
//               having it; for Serf also how many nodes got each event
//   failure   - from SIGKILL of an agent to every other listing it failed
//               (--trials agents, one after the other; median and max)
//   leave     - from a graceful leave request to every other listing it left
//               (as many agents again)
// Prints one table of medians with the ratio Starling / Serf per row, and
// writes JSON with --json. Every process it starts is killed by PID.
//
//   starling-serf-bench [--nodes 10,50,100] [--idle 60] [--changes 10] [--json FILE]
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "bench_util.h"
#include "serf_rpc.h"

namespace {

using namespace std::chrono_literals;
using starling::bench::Call;
using starling::bench::Median;
using starling::bench::ProcFigures;
using starling::bench::SerfMember;
using starling::bench::SerfRpc;
using starling::api::Reply;
using starling::api::Request;
using SteadyClock = std::chrono::steady_clock;
using Statuses = std::map<std::string, std::string>;  // member name -> status, as one agent lists them

double Since(SteadyClock::time_point t0) { return std::chrono::duration<double>(SteadyClock::now() - t0).count(); }

struct Agent {
  std::string name, dir, addr, rpc_addr, socket;
  pid_t pid = -1;
};

// Every agent but the first joins at the same moment, as when a fleet
// boots together, each on its own thread: `join(i)` returns "" or what
// went wrong.
std::string JoinInParallel(int n, const std::function<std::string(int)>& join) {
  std::vector<std::string> errors(n);
  std::vector<std::thread> threads;
  for (int i = 1; i < n; ++i) threads.emplace_back([&, i] { errors[i] = join(i); });
  for (auto& t : threads) t.join();
  for (const auto& e : errors)
    if (!e.empty()) return e;
  return "";
}

// What a run of either tool must provide.
class Tool {
 public:
  virtual ~Tool() { StopAll(); }
  virtual const char* Name() const = 0;
  // Starts n agents that know nobody yet; "" or what went wrong.
  virtual std::string Start(int n, const std::string& root) = 0;
  // Every agent but the first joins through the first.
  virtual std::string JoinAll() = 0;
  virtual std::optional<Statuses> Members(int i) = 0;
  // Bytes agent i has sent since it started, by its own count.
  virtual std::optional<uint64_t> BytesSent(int i) = 0;
  // Waits until the cluster is quiet enough to time changes; "" or why not.
  virtual std::string PrepareChanges() = 0;
  // Issues change k on `writer`; fills seconds until every agent has
  // it (nullopt when some never did) and how many did.
  virtual std::string Change(int k, int writer, std::optional<double>* all_s, int* got) = 0;
  // Starts a graceful leave of agent i and returns at once.
  virtual void BeginLeave(int i) = 0;
  // The leave request has been answered (or the agent is gone).
  virtual void FinishLeave() {}

  int size() const { return static_cast<int>(agents_.size()); }
  const Agent& agent(int i) const { return agents_[i]; }
  void Kill(int i) {
    starling::bench::Kill(agents_[i].pid);
    agents_[i].pid = -1;
  }
  void StopAll() {
    for (auto& a : agents_)
      if (a.pid > 0) starling::bench::Kill(a.pid);
    agents_.clear();
  }

 protected:
  std::vector<Agent> agents_;
};

// ---- Starling ----------------------------------------------------------------

class StarlingTool final : public Tool {
 public:
  StarlingTool(std::string binary, std::string profile) : binary_(std::move(binary)), profile_(std::move(profile)) {}
  const char* Name() const override { return "starling"; }

  std::string Start(int n, const std::string& root) override {
    agents_.resize(n);
    for (int i = 0; i < n; ++i) {
      Agent& a = agents_[i];
      a.name = "n" + std::to_string(i);
      a.dir = root + "/" + a.name;
      a.socket = a.dir + ".sock";
      // HTTP stays on (as deployed): its cost is part of the figures.
      a.pid = starling::bench::Spawn({binary_, "--name", a.name, "--data-dir", a.dir, "--socket", a.socket, "--bind",
                                      "127.0.0.1:0", "--profile", profile_, "--log-level", "warn", "--http",
                                      "127.0.0.1:0"},
                                     a.dir + ".log");
    }
    for (auto& a : agents_) {
      bool up = starling::bench::WaitUntil(
          [&] {
            return Call(
                a.socket, [](Request::Builder r) { r.setInfo(); },
                [&](Reply::Reader r) { a.addr = r.getInfo().getAddr().cStr(); }, true);
          },
          30s);
      if (!up) return a.name + " did not start (log: " + a.dir + ".log)";
    }
    return "";
  }

  std::string JoinAll() override {
    return JoinInParallel(size(), [&](int i) -> std::string {
      bool ok = Call(
          agents_[i].socket, [&](Request::Builder r) { r.initJoin(1).set(0, agents_[0].addr); }, [](Reply::Reader) {});
      return ok ? "" : agents_[i].name + " could not join " + agents_[0].addr;
    });
  }

  std::optional<Statuses> Members(int i) override {
    Statuses out;
    bool ok = Call(
        agents_[i].socket, [](Request::Builder r) { r.setMembers(); },
        [&](Reply::Reader r) {
          for (auto m : r.getMembers()) out[m.getName().cStr()] = m.getStatus().cStr();
        },
        true);
    if (!ok) return std::nullopt;
    return out;
  }

  std::optional<uint64_t> BytesSent(int i) override {
    std::optional<uint64_t> sum;
    Call(
        agents_[i].socket, [](Request::Builder r) { r.setInfo(); },
        [&](Reply::Reader r) {
          sum = 0;
          for (auto c : r.getInfo().getCounters()) {
            std::string name = c.getName().cStr();
            if (name == "bytes_sent" || name == "stream_bytes_sent") *sum += c.getValue();
          }
        },
        true);
    return sum;
  }

  std::optional<std::string> Revision(int i) { return starling::bench::Revision(agents_[i].socket); }

  std::string PrepareChanges() override {
    // The lease records its voters in the desired state once membership has
    // settled: time changes after that, so that only ours move the revision.
    bool settled = starling::bench::WaitUntil(
        [&] {
          auto first = Revision(0);
          if (!first || first->empty()) return false;
          for (int i = 1; i < size(); ++i)
            if (Revision(i) != first) return false;
          return true;
        },
        120s, 200ms);
    return settled ? "" : "the lease voters were not recorded on every node within 120 s";
  }

  std::string Change(int k, int writer, std::optional<double>* all_s, int* got) override {
    auto revision = starling::bench::ApplyDocument(agents_[writer].socket, k);
    if (!revision) return "apply on " + agents_[writer].name + " failed";
    const auto t0 = SteadyClock::now();
    std::vector<std::string> sockets;
    for (const auto& a : agents_) sockets.push_back(a.socket);
    *got = starling::bench::AwaitRevision(sockets, *revision, 30s);
    if (*got == size()) *all_s = Since(t0);
    return "";
  }

  void BeginLeave(int i) override {
    // The API answers once the leave has spread: wait for it on the side.
    leaver_ = std::thread([socket = agents_[i].socket] {
      Call(socket, [](Request::Builder r) { r.setLeave(); }, [](Reply::Reader) {}, true);
    });
  }
  void FinishLeave() override {
    if (leaver_.joinable()) leaver_.join();
  }

 private:
  std::string binary_, profile_;
  std::thread leaver_;
};

// ---- Serf ---------------------------------------------------------------------

// Receives each agent's statsd lines on its own UDP port and sums the byte
// counters memberlist emits for what it sends.
class StatsdCounters {
 public:
  ~StatsdCounters() { Stop(); }
  // A listener per agent (0 .. n-1); false when a socket could not be opened.
  bool Open(int n) {
    sums_ = std::vector<std::atomic<uint64_t>>(n);
    for (int i = 0; i < n; ++i) {
      int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t len = sizeof a;
      if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
          getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        if (fd >= 0) close(fd);
        return false;
      }
      fds_.push_back({fd, POLLIN, 0});
      ports_.push_back(ntohs(a.sin_port));
    }
    running_ = true;
    reader_ = std::thread([this] { Read(); });
    return true;
  }
  int port(int i) const { return ports_[i]; }
  uint64_t bytes(int i) const { return sums_[i].load(); }
  void Stop() {
    running_ = false;
    if (reader_.joinable()) reader_.join();
    for (auto& p : fds_) close(p.fd);
    fds_.clear();
    ports_.clear();
  }

 private:
  void Read() {
    char buf[65536];
    while (running_) {
      if (poll(fds_.data(), fds_.size(), 100) <= 0) continue;
      for (size_t i = 0; i < fds_.size(); ++i) {
        if (!(fds_[i].revents & POLLIN)) continue;
        ssize_t n = recv(fds_[i].fd, buf, sizeof buf, 0);
        if (n <= 0) continue;
        // Lines "serf-agent.memberlist.udp.sent:61.000000|c", one per send.
        std::string_view all(buf, static_cast<size_t>(n));
        while (!all.empty()) {
          auto nl = all.find('\n');
          std::string_view line = all.substr(0, nl);
          all = nl == std::string_view::npos ? std::string_view() : all.substr(nl + 1);
          auto colon = line.find(':');
          if (colon == std::string_view::npos) continue;
          auto key = line.substr(0, colon);
          if (!key.ends_with("memberlist.udp.sent") && !key.ends_with("memberlist.tcp.sent")) continue;
          sums_[i] += static_cast<uint64_t>(std::atof(std::string(line.substr(colon + 1)).c_str()));
        }
      }
    }
  }

  std::vector<pollfd> fds_;
  std::vector<int> ports_;
  std::vector<std::atomic<uint64_t>> sums_;
  std::atomic<bool> running_{false};
  std::thread reader_;
};

class SerfTool final : public Tool {
 public:
  SerfTool(std::string binary, std::string profile) : binary_(std::move(binary)), profile_(std::move(profile)) {}
  ~SerfTool() override {
    statsd_.Stop();
    StopAll();
  }
  const char* Name() const override { return "serf"; }

  std::string Start(int n, const std::string& root) override {
    statsd_.Stop();
    if (!statsd_.Open(n)) return "cannot open the statsd listeners";
    agents_.resize(n);
    rpc_.clear();
    rpc_.resize(n);
    const auto ports = starling::bench::FreePorts(2 * n);
    if (ports.empty()) return "not enough free ports on 127.0.0.1";
    for (int i = 0; i < n; ++i) {
      Agent& a = agents_[i];
      a.name = "s" + std::to_string(i);
      a.dir = root + "/" + a.name;
      const int gossip = ports[2 * i], rpc = ports[2 * i + 1];
      a.addr = "127.0.0.1:" + std::to_string(gossip);
      a.rpc_addr = "127.0.0.1:" + std::to_string(rpc);
      const std::string config = a.dir + ".json";
      std::ofstream(config) << nlohmann::json{{"statsd_addr", "127.0.0.1:" + std::to_string(statsd_.port(i))}}.dump();
      a.pid = starling::bench::Spawn({binary_, "agent", "-node", a.name, "-bind", a.addr, "-rpc-addr", a.rpc_addr,
                                      "-profile", profile_, "-log-level", "warn", "-config-file", config},
                                     a.dir + ".log");
    }
    for (int i = 0; i < n; ++i) {
      std::string why;
      bool up = starling::bench::WaitUntil(
          [&] { return (rpc_[i] = SerfRpc::Connect(agents_[i].rpc_addr, 1s, &why)).has_value(); }, 30s);
      if (!up) return agents_[i].name + " did not start: " + why + " (log: " + agents_[i].dir + ".log)";
    }
    return "";
  }

  std::string JoinAll() override {
    return JoinInParallel(size(), [&](int i) -> std::string {
      auto joined = rpc_[i]->Join({agents_[0].addr});
      if (joined && *joined >= 1) return "";
      return agents_[i].name + " could not join " + agents_[0].addr + ": " + rpc_[i]->error();
    });
  }

  std::optional<Statuses> Members(int i) override {
    if (!rpc_[i]) return std::nullopt;
    auto list = rpc_[i]->Members();
    if (!list) return std::nullopt;
    Statuses out;
    for (auto& m : *list) out[m.name] = m.status;
    return out;
  }

  std::optional<uint64_t> BytesSent(int i) override { return statsd_.bytes(i); }

  std::string PrepareChanges() override {
    streams_.clear();
    for (int i = 0; i < size(); ++i) {
      std::string why;
      auto c = SerfRpc::Connect(agents_[i].rpc_addr, 5s, &why);
      if (!c || !c->Stream("user")) return "cannot stream user events from " + agents_[i].name + ": " + why;
      streams_.push_back(std::move(*c));
    }
    return "";
  }

  std::string Change(int k, int writer, std::optional<double>* all_s, int* got) override {
    const std::string name = "bench-" + std::to_string(k);
    if (!rpc_[writer]->Event(name, "1.0." + std::to_string(k), false))
      return "serf event on " + agents_[writer].name + " failed: " + rpc_[writer]->error();
    const auto t0 = SteadyClock::now();
    std::vector<bool> seen(size(), false);
    int remaining = size();
    // User events are best effort: give stragglers 10 s, then count.
    while (remaining > 0 && Since(t0) < 10) {
      std::vector<pollfd> fds;
      for (auto& s : streams_) fds.push_back({s.fd(), POLLIN, 0});
      if (poll(fds.data(), fds.size(), 5) <= 0) continue;
      for (size_t i = 0; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        streams_[i].DrainUserEvents([&](const std::string& ev) {
          if (ev == name && !seen[i]) {
            seen[i] = true;
            --remaining;
          }
        });
      }
    }
    *got = size() - remaining;
    if (remaining == 0) *all_s = Since(t0);
    return "";
  }

  void BeginLeave(int i) override { rpc_[i]->SendLeave(); }

 private:
  std::string binary_, profile_;
  StatsdCounters statsd_;
  std::vector<std::optional<SerfRpc>> rpc_;
  std::vector<SerfRpc> streams_;
};

// ---- measuring ------------------------------------------------------------------

// Seconds from t0 until every agent in `who` satisfies `ok` on the member
// list it reports (each agent counted the first time it does); nullopt on
// timeout.
std::optional<double> Until(Tool& t, std::vector<int> who, const std::function<bool(const Statuses&)>& ok,
                            SteadyClock::time_point t0, std::chrono::seconds timeout) {
  while (!who.empty()) {
    if (SteadyClock::now() - t0 > timeout) return std::nullopt;
    std::vector<int> still;
    for (int i : who) {
      auto m = t.Members(i);
      if (!m || !ok(*m)) still.push_back(i);
    }
    who.swap(still);
    if (!who.empty()) std::this_thread::sleep_for(10ms);
  }
  return Since(t0);
}

struct Figures {
  std::optional<double> join_s, detect_s, leave_s, change_s;
  double join_requests_s = 0;   // until every join request was answered
  double join_max_s = 0, detect_max_s = 0, leave_max_s = 0;
  int leaves_not_seen = 0;  // leaves some agent never listed as left within 60 s
  double change_delivered = 0;  // fraction of (node, change) pairs that arrived
  int changes_complete = 0;     // changes that reached every node
  double rss_mb = 0, anon_mb = 0, pss_mb = 0, idle_cpu_s = 0, idle_bytes_per_s = 0;
  std::string error;
};

nlohmann::json ToJson(const Figures& f) {
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json j = {{"join_convergence_s", opt(f.join_s)},
                      {"join_convergence_max_s", f.join_max_s},
                      {"join_requests_s", f.join_requests_s},
                      {"failure_detection_s", opt(f.detect_s)},
                      {"failure_detection_max_s", f.detect_max_s},
                      {"leave_propagation_s", opt(f.leave_s)},
                      {"leave_propagation_max_s", f.leave_max_s},
                      {"leaves_not_seen_everywhere", f.leaves_not_seen},
                      {"change_propagation_s", opt(f.change_s)},
                      {"change_delivered_fraction", f.change_delivered},
                      {"changes_reaching_every_node", f.changes_complete},
                      {"rss_mb", f.rss_mb},
                      {"anon_mb", f.anon_mb},
                      {"pss_mb", f.pss_mb},
                      {"idle_cpu_seconds", f.idle_cpu_s},
                      {"idle_bytes_sent_per_s", f.idle_bytes_per_s}};
  if (!f.error.empty()) j["error"] = f.error;
  return j;
}

Figures Measure(Tool& t, int n, const std::string& root, int join_trials, int idle_s, int changes, int trials,
                uint32_t seed) {
  Figures f;
  auto fail = [&](std::string why) {
    f.error = why;
    std::fprintf(stderr, "  %s: %s\n", t.Name(), why.c_str());
    t.StopAll();
    return f;
  };
  std::printf("  %s: %d agents\n", t.Name(), n);
  std::fflush(stdout);
  std::error_code ec;
  std::vector<int> everyone(n);
  for (int i = 0; i < n; ++i) everyone[i] = i;
  // A join wave now and then leaves a member's news short of a few agents
  // until a later push-pull: one wave says little. Form the cluster
  // join_trials times from fresh agents; the last one goes on.
  std::vector<double> joins, requests;
  SteadyClock::time_point t0;
  for (int trial = 0; trial < join_trials; ++trial) {
    if (trial > 0) t.StopAll();
    const std::string dir = root + "/wave" + std::to_string(trial);
    std::filesystem::create_directories(dir, ec);
    if (ec) return fail("cannot create " + dir + ": " + ec.message());
    if (auto e = t.Start(n, dir); !e.empty()) return fail(e);
    t0 = SteadyClock::now();
    if (auto e = t.JoinAll(); !e.empty()) return fail(e);
    requests.push_back(Since(t0));
    auto s = Until(
        t, everyone,
        [n](const Statuses& m) {
          return std::count_if(m.begin(), m.end(), [](auto& kv) { return kv.second == "alive"; }) == n;
        },
        t0, 180s);
    if (!s) return fail("the join did not converge within 180 s");
    joins.push_back(*s);
    std::printf("  %s: join wave %d converged in %.2f s (join requests answered after %.2f s)\n", t.Name(),
                trial + 1, *s, requests.back());
    std::fflush(stdout);
  }
  f.join_s = Median(joins);
  f.join_max_s = *std::max_element(joins.begin(), joins.end());
  f.join_requests_s = Median(requests);

  if (auto e = t.PrepareChanges(); !e.empty()) return fail(e);
  // Let the join's gossip drain before calling the cluster idle.
  std::this_thread::sleep_for(5s);
  std::vector<std::optional<ProcFigures>> p0(n), p1(n);
  std::vector<std::optional<uint64_t>> b0(n), b1(n);
  for (int i = 0; i < n; ++i) p0[i] = starling::bench::ReadProc(t.agent(i).pid), b0[i] = t.BytesSent(i);
  const auto idle0 = SteadyClock::now();
  std::this_thread::sleep_for(std::chrono::seconds(idle_s));
  const double idle_secs = Since(idle0);
  for (int i = 0; i < n; ++i) p1[i] = starling::bench::ReadProc(t.agent(i).pid), b1[i] = t.BytesSent(i);
  std::vector<double> rss, anon, pss, cpu, bytes;
  for (int i = 0; i < n; ++i) {
    if (!p0[i] || !p1[i]) return fail(t.agent(i).name + " exited while idle");
    rss.push_back(p1[i]->rss_mb);
    anon.push_back(p1[i]->anon_mb);
    pss.push_back(p1[i]->pss_mb);
    cpu.push_back(p1[i]->cpu_seconds - p0[i]->cpu_seconds);
    if (b0[i] && b1[i]) bytes.push_back(static_cast<double>(*b1[i] - *b0[i]) / idle_secs);
  }
  f.rss_mb = Median(rss), f.anon_mb = Median(anon), f.pss_mb = Median(pss);
  f.idle_cpu_s = Median(cpu) * 60.0 / idle_secs;  // per 60 s
  f.idle_bytes_per_s = Median(bytes);
  std::printf("  %s: idle %.0f s: rss %.1f MB, cpu %.2f s per 60 s, %.0f B/s sent per agent\n", t.Name(), idle_secs,
              f.rss_mb, f.idle_cpu_s, f.idle_bytes_per_s);
  std::fflush(stdout);

  std::mt19937 rng(seed);
  std::vector<double> times;
  long delivered = 0;
  for (int k = 0; k < changes; ++k) {
    std::optional<double> all;
    int got = 0;
    if (auto e = t.Change(k, static_cast<int>(rng() % n), &all, &got); !e.empty()) return fail(e);
    delivered += got;
    if (all) times.push_back(*all), ++f.changes_complete;
    std::this_thread::sleep_for(200ms);
  }
  if (!times.empty()) f.change_s = Median(times);
  f.change_delivered = static_cast<double>(delivered) / (static_cast<double>(n) * changes);
  std::printf("  %s: changes: median %.1f ms to every node, %d of %d reached every node\n", t.Name(),
              f.change_s.value_or(0) * 1000, f.changes_complete, changes);
  std::fflush(stdout);

  // Several agents fail, one after the other, then several leave: medians
  // of single events are noise (detection depends on when the dead agent's
  // turn in someone's probe order comes up). Never the seed, agent 0.
  const int k = std::min(trials, (n - 1) / 2);
  std::vector<bool> gone(n, false);
  auto watchers = [&](int except) {
    std::vector<int> w;
    for (int i = 0; i < n; ++i)
      if (!gone[i] && i != except) w.push_back(i);
    return w;
  };
  auto lists_as = [&](const std::string& name, const char* status) {
    return [name, status](const Statuses& m) {
      auto it = m.find(name);
      return it != m.end() && it->second == status;
    };
  };
  std::vector<double> detect, leave;
  for (int v = 1; v <= k; ++v) {
    t0 = SteadyClock::now();
    t.Kill(v);
    gone[v] = true;
    auto s = Until(t, watchers(v), lists_as(t.agent(v).name, "failed"), t0, 180s);
    if (!s) return fail(t.agent(v).name + " was not listed failed everywhere within 180 s");
    detect.push_back(*s);
  }
  for (int l = k + 1; l <= 2 * k; ++l) {
    t0 = SteadyClock::now();
    t.BeginLeave(l);
    gone[l] = true;
    auto s = Until(t, watchers(l), lists_as(t.agent(l).name, "left"), t0, 60s);
    t.FinishLeave();
    if (s) {
      leave.push_back(*s);
      continue;
    }
    // Counted, not fatal: how the others list it instead is the finding.
    std::map<std::string, int> seen_as;
    for (int i : watchers(l))
      if (auto m = t.Members(i)) ++seen_as[m->count(t.agent(l).name) ? m->at(t.agent(l).name) : "absent"];
    std::string how;
    for (const auto& [status, count] : seen_as) how += " " + std::to_string(count) + " " + status;
    std::printf("  %s: %s left but after 60 s is listed as:%s\n", t.Name(), t.agent(l).name.c_str(), how.c_str());
    ++f.leaves_not_seen;
  }
  if (leave.empty()) return fail("no leave was seen everywhere within 60 s");
  f.detect_s = Median(detect), f.leave_s = Median(leave);
  f.detect_max_s = *std::max_element(detect.begin(), detect.end());
  f.leave_max_s = *std::max_element(leave.begin(), leave.end());
  std::printf(
      "  %s: failure detected in %.2f s (median of %d, max %.2f); leave seen everywhere in %.2f s (max %.2f, "
      "%d of %d never seen left everywhere)\n",
      t.Name(), *f.detect_s, k, f.detect_max_s, *f.leave_s, f.leave_max_s, f.leaves_not_seen, k);
  std::fflush(stdout);
  t.StopAll();
  return f;
}

std::string Fmt(const std::optional<double>& v, const char* fmt) {
  if (!v) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, *v);
  return buf;
}

std::optional<double> Ratio(const std::optional<double>& a, const std::optional<double>& b) {
  if (!a || !b || *b == 0) return std::nullopt;
  return *a / *b;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Starling and Serf side by side on 127.0.0.1: membership, change propagation, idle cost",
               "starling-serf-bench"};
  std::vector<int> sizes = {10, 50, 100};
  int idle_s = 60, changes = 10, trials = 3, join_trials = 3;
  uint32_t seed = 1;
  std::string starlingd = STARLINGD_DEFAULT_PATH, serf = "/usr/bin/serf", profile = "lan", json_out, only;
  app.add_option("--nodes", sizes, "Cluster sizes to run, one after the other")
      ->delimiter(',')
      ->check(CLI::Range(3, 300))
      ->capture_default_str();
  app.add_option("--idle", idle_s, "Seconds of idle for memory, CPU and traffic")
      ->check(CLI::Range(5, 3600))
      ->capture_default_str();
  app.add_option("--changes", changes, "Changes (apply / user events) per run")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--join-trials", join_trials, "Join waves per run, each from fresh agents")
      ->check(CLI::Range(1, 20))
      ->capture_default_str();
  app.add_option("--trials", trials, "Agents killed, then agents leaving, per run (at most (N-1)/2 each)")
      ->check(CLI::Range(1, 50))
      ->capture_default_str();
  app.add_option("--profile", profile, "Timing profile for both")
      ->check(CLI::IsMember({"lan", "wan", "local"}))
      ->capture_default_str();
  app.add_option("--only", only, "Run one tool only")->check(CLI::IsMember({"starling", "serf"}));
  app.add_option("--seed", seed, "Picks the writers")->capture_default_str();
  app.add_option("--starlingd", starlingd, "The daemon binary")->capture_default_str();
  app.add_option("--serf", serf, "The serf binary (Debian package serf)")->capture_default_str();
  app.add_option("--json", json_out, "Also write every figure as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  if (only != "starling" && access(serf.c_str(), X_OK) != 0) {
    std::fprintf(stderr,
                 "serf-bench: %s is not an executable: install the Debian package serf "
                 "(scripts/install-deps.sh --bench) or pass --serf PATH\n",
                 serf.c_str());
    return 2;
  }
  if (access(starlingd.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "serf-bench: %s is not an executable: build first or pass --starlingd PATH\n",
                 starlingd.c_str());
    return 2;
  }
  starling::bench::KillAllOnSignals();
  char tmpl[] = "/tmp/starling-serf-bench-XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::perror("serf-bench: mkdtemp");
    return 1;
  }
  const std::string root = tmpl;

  nlohmann::json runs = nlohmann::json::array();
  std::vector<std::pair<int, std::pair<Figures, Figures>>> results;
  bool ok = true;
  for (int n : sizes) {
    std::printf("N = %d (%s profile)\n", n, profile.c_str());
    Figures fs, ff;
    if (only != "serf") {
      StarlingTool st(starlingd, profile);
      fs = Measure(st, n, root + "/starling-" + std::to_string(n), join_trials, idle_s, changes, trials, seed);
    }
    if (only != "starling") {
      SerfTool sf(serf, profile);
      ff = Measure(sf, n, root + "/serf-" + std::to_string(n), join_trials, idle_s, changes, trials, seed);
    }
    ok = ok && fs.error.empty() && ff.error.empty();
    results.push_back({n, {fs, ff}});
    runs.push_back({{"nodes", n}, {"starling", ToJson(fs)}, {"serf", ToJson(ff)}});
  }

  struct Row {
    const char* label;
    const char* fmt;
    std::function<std::optional<double>(const Figures&)> get;
  };
  const std::vector<Row> rows = {
      {"join convergence (s)", "%.2f", [](const Figures& f) { return f.join_s; }},
      {"failure detection (s)", "%.2f", [](const Figures& f) { return f.detect_s; }},
      {"leave propagation (s)", "%.2f", [](const Figures& f) { return f.leave_s; }},
      {"leaves not seen as left (count)", "%.0f",
       [](const Figures& f) { return static_cast<double>(f.leaves_not_seen); }},
      {"change propagation (ms)", "%.1f",
       [](const Figures& f) { return f.change_s ? std::optional<double>(*f.change_s * 1000) : std::nullopt; }},
      {"changes delivered (%)", "%.1f", [](const Figures& f) { return f.change_delivered * 100; }},
      {"resident memory (MB)", "%.1f", [](const Figures& f) { return f.rss_mb; }},
      {"  private (anon) (MB)", "%.1f", [](const Figures& f) { return f.anon_mb; }},
      {"  proportional (PSS) (MB)", "%.1f", [](const Figures& f) { return f.pss_mb; }},
      {"idle CPU (s per 60 s)", "%.3f", [](const Figures& f) { return f.idle_cpu_s; }},
      {"bytes sent per agent (B/s)", "%.0f", [](const Figures& f) { return f.idle_bytes_per_s; }},
  };
  std::printf("\nmedians per agent, %s profile (bytes: starlingd's API counters; serf's memberlist.udp/tcp.sent "
              "statsd counters)\n",
              profile.c_str());
  std::printf("%-5s %-28s %12s %12s %10s\n", "N", "figure", "starling", "serf", "ratio");
  for (auto& [n, figs] : results) {
    for (const auto& row : rows) {
      auto a = figs.first.error.empty() && only != "serf" ? row.get(figs.first) : std::nullopt;
      auto b = figs.second.error.empty() && only != "starling" ? row.get(figs.second) : std::nullopt;
      std::printf("%-5d %-28s %12s %12s %10s\n", n, row.label, Fmt(a, row.fmt).c_str(), Fmt(b, row.fmt).c_str(),
                  Fmt(Ratio(a, b), "%.2f").c_str());
    }
  }
  if (!json_out.empty()) {
    utsname u{};
    uname(&u);
    nlohmann::json j = {{"profile", profile},
                        {"idle_seconds", idle_s},
                        {"changes", changes},
                        {"host", std::string(u.sysname) + " " + u.release + " " + u.machine},
                        {"cpus", std::thread::hardware_concurrency()},
                        {"runs", runs}};
    std::ofstream(json_out) << j.dump(2) << "\n";
    std::printf("figures written to %s\n", json_out.c_str());
  }
  starling::bench::KillAll();
  if (!ok) {
    std::fprintf(stderr, "serf-bench: logs kept in %s\n", root.c_str());
    return 1;
  }
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  return 0;
}
