// starling-fault: real starlingd daemons on hosts made of network namespaces,
// under faults, then checked (checker.h). See tests/fault/README.md.
//
//   starling-fault [--hosts 5] [--minutes 2] [--seed S] [--out DIR]
//   starling-fault --check DIR/history.json
//
// Exit status: 0 no violation, 1 violations, 2 the run could not be set up,
// 77 skipped (not root, or no network namespaces / nft here).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "checker.h"
#include "local_cluster.h"

namespace starling::fault {
namespace {

using itest::CommandResult;
using itest::RunCommand;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr int kSkip = 77;
std::atomic<bool> g_stop{false};

// The binaries under test: the build's, unless STARLINGD / STARLING_CLI name others
// (a long run keeps its own copies while the tree is rebuilt).
std::string Binary(const char* env, const char* built) {
  const char* v = std::getenv(env);
  return v && *v ? v : built;
}

Micros Now() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const Micros g_start = Now();

void Say(const std::string& s) {
  std::printf("[%6.1f s] %s\n", static_cast<double>(Now() - g_start) / 1e6, s.c_str());
  std::fflush(stdout);
}

std::string Which(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (access(c.c_str(), X_OK) == 0) return c;
  return "";
}

// Runs a command, logging failures; returns whether it exited 0.
bool Sh(const std::vector<std::string>& argv, bool quiet = false) {
  CommandResult r = RunCommand(argv, 20s);
  if (r.exit_code != 0 && !quiet) {
    std::string line;
    for (const auto& a : argv) line += a + " ";
    Say("command failed (" + std::to_string(r.exit_code) + "): " + line + r.err);
  }
  return r.exit_code == 0;
}

struct Host {
  std::string name, ns, addr, dir;
  pid_t pid = -1;
  bool paused = false;
};

// Whether `pid` is a starling-fault still running.
bool Running(pid_t pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  return comm >> name && name.rfind("starling-fault", 0) == 0;
}

class Net {
 public:
  Net(int hosts, std::string ip, std::string nft) : ip_(std::move(ip)), nft_(std::move(nft)) {
    prefix_ = "stf" + std::to_string(getpid());
    for (int i = 0; i < hosts; ++i) {
      Host h;
      h.name = "h" + std::to_string(i);
      h.ns = prefix_ + "-" + h.name;
      h.addr = "10.77.0." + std::to_string(i + 1);
      hosts_.push_back(h);
    }
  }
  ~Net() { Down(); }
  std::vector<Host>& hosts() { return hosts_; }

  // Namespaces left by a run that was killed (their owner is gone).
  void CleanLeftovers() {
    CommandResult r = RunCommand({ip_, "netns", "list"}, 10s);
    std::istringstream in(r.out);
    std::string name, rest;
    while (in >> name) {
      std::getline(in, rest);
      if (name.rfind("stf", 0) != 0 || name.find('-') == std::string::npos) continue;
      const pid_t owner = static_cast<pid_t>(std::atoi(name.substr(3, name.find('-') - 3).c_str()));
      if (owner <= 0 || Running(owner)) continue;  // ours, or another run's still going
      Say("removing namespace " + name + " left by an earlier run");
      Sh({ip_, "netns", "del", name}, true);
    }
  }

  bool Up() {
    up_ = true;
    const std::string sw = prefix_ + "-sw";
    if (!Sh({ip_, "netns", "add", sw}) || !In(sw, {ip_, "link", "add", "br0", "type", "bridge"}) ||
        !In(sw, {ip_, "link", "set", "br0", "up"}))
      return false;
    for (size_t i = 0; i < hosts_.size(); ++i) {
      const Host& h = hosts_[i];
      const std::string a = "v" + prefix_.substr(3) + "s" + std::to_string(i), b = "v" + prefix_.substr(3) + "h" + std::to_string(i);
      if (!Sh({ip_, "netns", "add", h.ns}) || !Sh({ip_, "link", "add", a, "type", "veth", "peer", "name", b}) ||
          !Sh({ip_, "link", "set", a, "netns", sw}) || !Sh({ip_, "link", "set", b, "netns", h.ns}) ||
          !In(sw, {ip_, "link", "set", a, "master", "br0", "up"}) ||
          !In(h.ns, {ip_, "link", "set", b, "name", "eth0"}) ||
          !In(h.ns, {ip_, "addr", "add", h.addr + "/24", "dev", "eth0"}) ||
          !In(h.ns, {ip_, "link", "set", "eth0", "up"}) || !In(h.ns, {ip_, "link", "set", "lo", "up"}))
        return false;
      if (!In(h.ns, {nft_, "add", "table", "inet", "fault"}) ||
          !In(h.ns, {nft_, "add", "chain", "inet", "fault", "in",
                     "{ type filter hook input priority 0; policy accept; }"}))
        return false;
    }
    return true;
  }

  void Down() {
    if (!up_) return;
    up_ = false;
    for (Host& h : hosts_) {
      if (h.pid > 0) {
        kill(h.pid, SIGKILL);
        waitpid(h.pid, nullptr, 0);
        h.pid = -1;
      }
      Sh({ip_, "netns", "del", h.ns}, true);
    }
    Sh({ip_, "netns", "del", prefix_ + "-sw"}, true);
    Say("namespaces removed");
  }

  bool In(const std::string& ns, std::vector<std::string> argv) {
    argv.insert(argv.begin(), {ip_, "netns", "exec", ns});
    return Sh(argv);
  }

  // Drops, on host `to`, what arrives from `from`.
  void Block(size_t to, size_t from) {
    In(hosts_[to].ns, {nft_, "add", "rule", "inet", "fault", "in", "ip", "saddr", hosts_[from].addr, "drop"});
  }
  void Loss(size_t host, int percent) {
    In(hosts_[host].ns, {nft_, "add", "rule", "inet", "fault", "in", "iifname", "eth0", "numgen", "random", "mod",
                         "100", "<", std::to_string(percent), "drop"});
  }
  void Heal() {
    for (const Host& h : hosts_) In(h.ns, {nft_, "flush", "chain", "inet", "fault", "in"});
  }

 private:
  std::string ip_, nft_, prefix_;
  std::vector<Host> hosts_;
  bool up_ = false;
};

struct Options {
  int hosts = 5;
  double minutes = 2;
  uint64_t seed = 0;
  std::string out;
};

class Run {
 public:
  Run(Options o, Net& net) : o_(std::move(o)), net_(net), rng_(o_.seed) {}

  int Main() {
    auto& hosts = net_.hosts();
    for (Host& h : hosts) {
      h.dir = o_.out + "/" + h.name;
      std::filesystem::create_directories(h.dir);
      if (!Start(h, h.name != "h0")) return 2;
    }
    if (!Converged(60s)) {
      Say("the hosts did not form one cluster within 60 s");
      return 2;
    }
    if (!Apply(0, Document("1"), nullptr)) return 2;
    version_ = 1;
    char minutes[32];
    std::snprintf(minutes, sizeof minutes, "%g", o_.minutes);
    Say("cluster of " + std::to_string(hosts.size()) + " formed; desired state applied; faults for " + minutes +
        " min, seed " + std::to_string(o_.seed));

    std::thread workload([this] { Workload(); });
    Nemesis(Now() + static_cast<Micros>(o_.minutes * 60e6));
    done_ = true;
    workload.join();
    if (g_stop) return 2;  // interrupted: straight to the teardown
    HealAll();
    Say("healed; waiting for the cluster to settle");
    Settle();
    return Report();
  }

 private:
  std::vector<std::string> DaemonArgs(const Host& h, bool join) const {
    std::vector<std::string> a = {Binary("STARLINGD", STARLINGD_PATH), "--name",       h.name,        "--bind",       h.addr + ":7946",
                                  "--data-dir",     h.dir,          "--hooks-dir", STARLING_EXAMPLE_HOOKS,
                                  "--log-format",   "json",         "--lease-log", h.dir + "/lease.log",
                                  "--tag",          "roles=app"};
    if (join) a.insert(a.end(), {"--join", net_.hosts()[0].addr + ":7946"});
    return a;
  }

  bool Start(Host& h, bool join) {
    std::vector<std::string> argv = {ip_path_, "netns", "exec", h.ns};
    for (auto& a : DaemonArgs(h, join)) argv.push_back(a);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const std::string log = h.dir + "/daemon.log";
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      execv(args[0], args.data());
      _exit(127);
    }
    if (pid < 0) return false;
    h.pid = pid;
    h.paused = false;
    return true;
  }

  CommandResult Cli(size_t i, std::vector<std::string> args, std::chrono::milliseconds timeout = 10s) const {
    args.insert(args.begin(), {Binary("STARLING_CLI", STARLING_CLI_PATH), "--socket", net_.hosts()[i].dir + "/starlingd.sock"});
    return RunCommand(args, timeout);
  }

  std::optional<json> CliJson(size_t i, std::vector<std::string> args) const {
    args.insert(args.end(), {"--format", "json"});
    CommandResult r = Cli(i, args);
    if (r.exit_code != 0) return std::nullopt;
    json j = json::parse(r.out, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }

  bool Converged(std::chrono::seconds timeout) {
    return itest::WaitFor(
        [&] {
          for (size_t i = 0; i < net_.hosts().size(); ++i) {
            auto m = CliJson(i, {"members"});
            if (!m) return false;
            size_t alive = 0;
            for (const auto& x : *m) alive += x.value("status", "") == "alive";
            if (alive != net_.hosts().size()) return false;
          }
          return true;
        },
        timeout, 500ms);
  }

  std::string Document(const std::string& version) const {
    std::string doc = "roles: [app]\nnodes:\n";
    std::string voters;
    const size_t voter_count = net_.hosts().size() >= 5 ? 5 : 3;  // an odd set, 3 or 5
    for (size_t i = 0; i < net_.hosts().size(); ++i) {
      doc += "  " + net_.hosts()[i].name + ": {lifecycle: commissioned, roles: [app]}\n";
      if (i < voter_count) voters += (voters.empty() ? "" : ", ") + net_.hosts()[i].name;
    }
    doc += "voters: [" + voters + "]\n";
    doc += "packages:\n  web:\n    version: \"" + version +
           "\"\n    hooks: {install: web-install, verify: web-verify, remove: web-remove}\n";
    doc += "services:\n  api:\n    package: web\n    hooks: {start: api-start, stop: api-stop, health: api-health}\n";
    doc += Policy(0);
    return doc;
  }

  // The checker's over-unavailable rule reads batch (max_unavailable) and
  // min_healthy from these.
  static constexpr size_t kBatch = 1;
  static constexpr Micros kMinHealthy = 2'000'000;
  static std::string Policy(int k) {
    return "policy: {batch: " + std::to_string(kBatch) + ", min_healthy: " + std::to_string(kMinHealthy / 1'000'000) +
           "s, node_deadline: 90s, progress_deadline: " + std::to_string(1800 + k) +
           "s, failure_threshold: 0, auto_revert: true}\n";
  }

  // Applies `doc` on host i; records the acknowledgement.
  bool Apply(size_t i, const std::string& doc, Ack* ack) {
    const std::string path = net_.hosts()[i].dir + "/../doc-" + std::to_string(i) + "-" + std::to_string(++docs_) + ".yaml";
    std::ofstream(path) << doc;
    const Micros at = Now();
    CommandResult r = Cli(i, {"apply", "-f", path, "--format", "json"});
    if (r.exit_code != 0) return false;
    json j = json::parse(r.out, nullptr, false);
    if (!j.is_object() || !j.value("changed", false)) return false;
    std::lock_guard lock(mu_);
    Ack a{net_.hosts()[i].name, j.value("origin", ""), j.value("seq", uint64_t{0}), j.value("revision", ""), at};
    history_.acks.push_back(a);
    if (ack) *ack = a;
    return true;
  }

  std::optional<size_t> RunningHost() {
    std::lock_guard lock(mu_);
    std::vector<size_t> up;
    for (size_t i = 0; i < net_.hosts().size(); ++i)
      if (net_.hosts()[i].pid > 0 && !net_.hosts()[i].paused) up.push_back(i);
    if (up.empty()) return std::nullopt;
    return up[work_rng_() % up.size()];
  }

  // Changes from random nodes every 2-4 s; a new version rolled out whenever
  // the last rollout has settled.
  void Workload() {
    int k = 0;
    while (!done_ && !g_stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2000 + work_rng_() % 2000));
      auto i = RunningHost();
      if (!i) continue;
      Apply(*i, Policy(++k), nullptr);
      auto status = CliJson(*i, {"rollout", "status"});
      if (!status) continue;
      const std::string state = status->value("state", "");
      {
        std::lock_guard lock(mu_);
        const uint64_t id = status->value("id", uint64_t{0});
        if (id > 0 && state != "idle") history_.rollouts[id] = state;
      }
      if (state != "idle" && state != "succeeded" && state != "incomplete" && state != "failed" && state != "reverted")
        continue;
      if (status->contains("requested") && !(*status)["requested"].is_null()) continue;
      std::string doc = Document(std::to_string(version_ + 1));
      if (!Apply(*i, doc, nullptr)) continue;
      ++version_;
      auto started = CliJson(*i, {"rollout", "start"});
      if (started && started->contains("id")) {
        std::lock_guard lock(mu_);
        history_.rollouts[(*started)["id"]] = "requested";
        ++rollouts_started_;
      }
    }
  }

  // Every 5 to 10 s, one to three nemeses at once (chosen from the seed),
  // for 5 to 20 s, then everything healed.
  void Nemesis(Micros end) {
    static const std::vector<std::string> kKinds = {"partition", "bridge", "one-way", "loss", "kill", "pause"};
    while (Now() < end && !g_stop) {
      Sleep(std::chrono::milliseconds(5000 + rng_() % 5000));
      if (g_stop || Now() >= end) break;
      std::vector<std::string> kinds = kKinds;
      std::shuffle(kinds.begin(), kinds.end(), rng_);
      kinds.resize(rng_() % 3 == 0 ? 2 + rng_() % 2 : 1);
      std::vector<Fault> now;
      std::string said;
      std::set<size_t> stopped;  // a node is killed or paused by one nemesis at most
      for (const auto& kind : kinds) {
        if (auto f = Inject(kind, stopped, &said)) now.push_back(*f);
      }
      if (now.empty()) continue;
      Say("fault:" + said);
      Sleep(std::chrono::milliseconds(5000 + rng_() % 15000));
      HealAll();
      const Micros until = Now();
      std::lock_guard lock(mu_);
      for (Fault& f : now) {
        f.until = until;
        history_.faults.push_back(f);
        ++faults_[f.kind];
      }
    }
  }

  std::optional<Fault> Inject(const std::string& kind, std::set<size_t>& stopped, std::string* said) {
    auto& hosts = net_.hosts();
    const size_t n = hosts.size();
    std::vector<size_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = i;
    std::shuffle(v.begin(), v.end(), rng_);
    auto names = [&](const std::vector<size_t>& ids) {
      std::vector<std::string> out;
      for (size_t i : ids) out.push_back(hosts[i].name);
      return out;
    };
    auto partition = [&](const std::vector<size_t>& a, const std::vector<size_t>& b) {
      for (size_t x : a)
        for (size_t y : b) net_.Block(x, y), net_.Block(y, x);
    };
    Fault f{kind, {}, Now(), 0};
    std::string detail;
    if (kind == "partition") {  // a minority cut off from the majority
      const size_t minority = 1 + rng_() % ((n - 1) / 2);
      std::vector<size_t> a(v.begin(), v.begin() + static_cast<long>(minority));
      std::vector<size_t> b(v.begin() + static_cast<long>(minority), v.end());
      partition(a, b);
      f.nodes = names(a);
    } else if (kind == "bridge") {  // two sides that only one node reaches both of
      std::vector<size_t> a, b;
      for (size_t i = 1; i < n; ++i) (i % 2 ? a : b).push_back(v[i]);
      partition(a, b);
      f.nodes = names({v[0]});
      detail = " (bridge)";
    } else if (kind == "one-way") {  // v[0] hears nothing from v[1]
      net_.Block(v[0], v[1]);
      f.nodes = names({v[0], v[1]});
    } else if (kind == "loss") {
      const int percent = 5 + static_cast<int>(rng_() % 26);
      for (size_t i = 0; i < n; ++i) net_.Loss(i, percent);
      f.nodes = names(v);
      detail = " " + std::to_string(percent) + " %";
    } else {  // kill -9 or SIGSTOP one running node
      std::lock_guard lock(mu_);
      size_t x = n;
      for (size_t i : v)
        if (!stopped.count(i) && hosts[i].pid > 0 && !hosts[i].paused) {
          x = i;
          break;
        }
      if (x == n) return std::nullopt;
      stopped.insert(x);
      if (kind == "kill") {
        kill(hosts[x].pid, SIGKILL);
        waitpid(hosts[x].pid, nullptr, 0);
        hosts[x].pid = -1;
      } else {
        kill(hosts[x].pid, SIGSTOP);
        hosts[x].paused = true;
      }
      f.nodes = names({x});
    }
    *said += " " + kind + detail + " [";
    for (const auto& name : f.nodes) *said += " " + name;
    *said += " ]";
    return f;
  }

  void Sleep(std::chrono::milliseconds d) {
    const auto end = std::chrono::steady_clock::now() + d;
    while (!g_stop && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(100ms);
  }

  void HealAll() {
    net_.Heal();
    std::lock_guard lock(mu_);
    for (Host& h : net_.hosts()) {
      if (h.paused) {
        kill(h.pid, SIGCONT);
        h.paused = false;
      }
      if (h.pid <= 0) Start(h, false);
    }
  }

  void Settle() {
    const size_t n = net_.hosts().size();
    bool ok = itest::WaitFor(
        [&] {
          if (g_stop) return true;
          std::string digest;
          for (size_t i = 0; i < n; ++i) {
            auto info = CliJson(i, {"info"});
            auto status = CliJson(i, {"rollout", "status"});
            if (!info || !status) return false;
            if (i > 0 && info->value("digest", "") != digest) return false;
            digest = info->value("digest", "");
            const std::string s = status->value("state", "");
            if (s == "running" || s == "paused") return false;
            if (status->contains("requested") && !(*status)["requested"].is_null()) return false;
          }
          return true;
        },
        300s, 1s);
    if (!ok) Say("not settled within 5 min of the heal (the checker will say what is wrong)");
    history_.max_unavailable = kBatch;
    history_.min_healthy = kMinHealthy;
    if (auto status = CliJson(0, {"rollout", "status"})) {
      history_.last_rollout = status->value("id", uint64_t{0});
      history_.last_rollout_state = status->value("state", "");
      if (history_.rollouts.count(history_.last_rollout)) history_.rollouts[history_.last_rollout] = history_.last_rollout_state;
    }
  }

  static Micros ParseTime(const std::string& iso) {  // 2026-11-30T08:56:49.569Z
    std::tm tm{};
    if (!strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
    const Micros secs = static_cast<Micros>(timegm(&tm));
    const int millis = iso.size() >= 23 ? std::atoi(iso.substr(20, 3).c_str()) : 0;
    return secs * 1000000 + millis * 1000;
  }

  void Collect() {
    for (size_t i = 0; i < net_.hosts().size(); ++i) {
      const Host& h = net_.hosts()[i];
      NodeFinal f;
      f.name = h.name;
      if (auto hist = CliJson(i, {"history"}); hist && hist->is_array())
        for (const auto& row : *hist) f.entries.insert({row.value("origin", ""), row.value("seq", uint64_t{0})});
      if (auto info = CliJson(i, {"info"})) f.digest = info->value("digest", "");
      history_.finals.push_back(f);

      std::ifstream lease(h.dir + "/lease.log");
      for (std::string line; std::getline(lease, line);) {
        json j = json::parse(line, nullptr, false);
        if (j.is_object())
          history_.holds.push_back({j.value("node", ""), j.value("ballot", uint64_t{0}), j.value("from_us", Micros{0}),
                                    j.value("until_us", Micros{0})});
      }
      // "<time> <node> <what> <service> <version>"; a stop of a service that was not running has no version.
      std::ifstream events(h.dir + "/example-state/events.log");
      for (std::string line; std::getline(events, line);) {
        std::istringstream fields(line);
        double at;
        std::string node, what, item;
        if (fields >> at >> node >> what >> item && item == "api")
          history_.services.push_back({node, what, static_cast<Micros>(at * 1e6)});
      }
      std::ifstream log(h.dir + "/daemon.log");
      for (std::string line; std::getline(log, line);) {
        if (line.find("member-failed") == std::string::npos) continue;
        json j = json::parse(line, nullptr, false);
        if (!j.is_object()) continue;
        const std::string msg = j.value("msg", "");
        if (msg.rfind("member-failed ", 0) != 0) continue;
        const std::string member = msg.substr(14, msg.find(':') - 14);
        history_.declared.push_back({h.name, member, ParseTime(j.value("time", ""))});
      }
    }
  }

  int Report() {
    if (g_stop) return 2;
    Collect();
    std::ofstream(o_.out + "/history.json") << ToJson(history_).dump() << "\n";
    auto v = Check(history_);
    std::map<std::string, int> rollouts;
    for (const auto& [id, state] : history_.rollouts) ++rollouts[state];
    std::ostringstream r;
    r << "seed " << o_.seed << ", " << net_.hosts().size() << " hosts, " << o_.minutes << " min of faults\n";
    r << "changes acknowledged " << history_.acks.size() << "\n";
    int total = 0;
    r << "faults injected";
    for (const auto& [k, n] : faults_) r << " " << k << " " << n, total += n;
    r << " (total " << total << ")\n";
    r << "rollouts asked " << history_.rollouts.size() << " (last state seen of each):";
    for (const auto& [s, n] : rollouts) r << " " << s << " " << n;
    r << "; the last, " << history_.last_rollout << ", " << history_.last_rollout_state;
    r << "\nlease holds " << history_.holds.size() << ", service events " << history_.services.size()
      << ", failure declarations " << history_.declared.size() << "\n";
    r << "violations " << v.size() << ":\n" << Summary(v);
    for (const auto& x : v) r << "  " << x.rule << ": " << x.what << "\n";
    std::printf("%s", r.str().c_str());
    std::ofstream(o_.out + "/report.txt") << r.str();
    return v.empty() ? 0 : 1;
  }

 public:
  std::string ip_path_;

 private:
  Options o_;
  Net& net_;
  std::mt19937_64 rng_;
  std::mt19937_64 work_rng_{o_.seed ^ 0x9e3779b97f4a7c15ULL};
  std::mutex mu_;
  History history_;
  std::map<std::string, int> faults_;
  std::atomic<bool> done_{false};
  int version_ = 0, docs_ = 0, rollouts_started_ = 0;
};

// `--check FILE`: the checker again, over a run's saved history.json.
int CheckSaved(const std::string& path) {
  std::ifstream in(path);
  json j = json::parse(in, nullptr, false);
  if (!in || j.is_discarded() || !j.is_object()) {
    std::fprintf(stderr, "starling-fault: %s is not a saved history (history.json of a run)\n", path.c_str());
    return 2;
  }
  const History h = HistoryFromJson(j);
  auto v = Check(h);
  std::printf("%zu changes acknowledged, %zu faults, %zu rollouts, %zu lease holds, %zu service events, %zu failure "
              "declarations\nviolations %zu:\n%s",
              h.acks.size(), h.faults.size(), h.rollouts.size(), h.holds.size(), h.services.size(), h.declared.size(),
              v.size(), Summary(v).c_str());
  for (const auto& x : v) std::printf("  %s: %s\n", x.rule.c_str(), x.what.c_str());
  return v.empty() ? 0 : 1;
}

int Main(int argc, char** argv) {
  Options o;
  if (argc == 3 && std::string(argv[1]) == "--check") return CheckSaved(argv[2]);
  o.seed = static_cast<uint64_t>(std::time(nullptr));
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--hosts") o.hosts = std::atoi(next().c_str());
    else if (a == "--minutes") o.minutes = std::atof(next().c_str());
    else if (a == "--seed") o.seed = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--out") o.out = next();
    else {
      std::fprintf(stderr,
                   "usage: starling-fault [--hosts 3..7] [--minutes M] [--seed S] [--out DIR]\n"
                   "       starling-fault --check DIR/history.json   (check a saved run again)\n");
      return 2;
    }
  }
  if (o.hosts < 3 || o.hosts > 7) {
    std::fprintf(stderr, "starling-fault: --hosts must be 3 to 7\n");
    return 2;
  }
  if (geteuid() != 0) {
    std::printf("starling-fault: skipped: needs root to create network namespaces\n");
    return kSkip;
  }
  const std::string ip = Which({"/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"});
  const std::string nft = Which({"/usr/sbin/nft", "/usr/bin/nft", "/sbin/nft"});
  if (ip.empty() || nft.empty()) {
    std::printf("starling-fault: skipped: needs ip (iproute2) and nft (nftables): scripts/install-deps.sh --with-tests\n");
    return kSkip;
  }
  if (!Sh({ip, "netns", "add", "stf-probe-" + std::to_string(getpid())}, true)) {
    std::printf("starling-fault: skipped: cannot create network namespaces here\n");
    return kSkip;
  }
  Sh({ip, "netns", "del", "stf-probe-" + std::to_string(getpid())}, true);
  if (o.out.empty()) {
    char tmpl[] = "/tmp/starling-fault-XXXXXX";
    o.out = mkdtemp(tmpl);
  }
  if (std::filesystem::exists(o.out) && !std::filesystem::is_empty(o.out)) {
    std::fprintf(stderr, "starling-fault: --out %s is not empty: a run needs fresh data dirs\n", o.out.c_str());
    return 2;
  }
  std::filesystem::create_directories(o.out);
  std::printf("starling-fault: seed %llu (rerun with --seed %llu), %d hosts, output in %s\n",
              static_cast<unsigned long long>(o.seed), static_cast<unsigned long long>(o.seed), o.hosts, o.out.c_str());
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = true; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  Net net(o.hosts, ip, nft);
  net.CleanLeftovers();
  if (!net.Up()) {
    std::fprintf(stderr, "starling-fault: setting up the namespaces failed\n");
    return 2;
  }
  Run run(o, net);
  run.ip_path_ = ip;
  int rc = run.Main();
  if (g_stop) {
    std::printf("starling-fault: interrupted; tearing down\n");
    rc = 2;
  }
  net.Down();
  return rc;
}

}  // namespace
}  // namespace starling::fault

int main(int argc, char** argv) { return starling::fault::Main(argc, argv); }
