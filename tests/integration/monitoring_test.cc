// The read-only HTTP endpoint of real daemons: a real Prometheus scraping a
// 3-node cluster, promtool on every node's /metrics and on the example
// rules, the JSON endpoints' content, and /health during a leave.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "local_cluster.h"

namespace starling::itest {
namespace {

using json = nlohmann::json;

bool HaveProgram(const std::string& name) {
  return RunCommand({"/bin/sh", "-c", "command -v " + name}, 5s).exit_code == 0;
}

// host, port of node i's --http, from `starling info`.
std::pair<std::string, int> HttpOf(const LocalCluster& c, int i) {
  auto info = c.Info(i);
  if (!info) return {"", 0};
  std::string addr = info->value("http", "");
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) return {"", 0};
  return {addr.substr(0, colon), std::stoi(addr.substr(colon + 1))};
}

struct Got {
  int status = 0;
  std::string body;
};

Got HttpGet(const std::pair<std::string, int>& at, const std::string& path) {
  httplib::Client client(at.first, at.second);
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(5, 0);
  auto r = client.Get(path.c_str());
  if (!r) return {};
  return {r->status, r->body};
}

std::optional<json> GetJson(const std::pair<std::string, int>& at, const std::string& path) {
  Got g = HttpGet(at, path);
  if (g.status != 200) return std::nullopt;
  json j = json::parse(g.body, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

// A Prometheus server on 127.0.0.1, killed by PID at the end.
class Prometheus {
 public:
  Prometheus(const std::string& dir, const std::vector<std::string>& targets) : dir_(dir), port_(FreePort()) {
    std::ofstream cfg(dir + "/prometheus.yml");
    cfg << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        << "scrape_configs:\n  - job_name: starling\n    static_configs:\n      - targets: [";
    for (size_t i = 0; i < targets.size(); ++i) cfg << (i ? ", " : "") << '"' << targets[i] << '"';
    cfg << "]\n";
    cfg.close();
    pid_ = fork();
    if (pid_ == 0) {
      std::string log = dir + "/prometheus.log";
      FILE* out = std::freopen(log.c_str(), "w", stdout);
      (void)out;
      dup2(fileno(stdout), fileno(stderr));
      std::string config = "--config.file=" + dir + "/prometheus.yml";
      std::string storage = "--storage.tsdb.path=" + dir + "/tsdb";
      std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(port_);
      execlp("prometheus", "prometheus", config.c_str(), storage.c_str(), listen.c_str(), nullptr);
      _exit(127);
    }
  }
  ~Prometheus() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // The result vector of an instant query, or nullopt while it cannot answer.
  std::optional<json> Query(const std::string& q) const {
    httplib::Client client("127.0.0.1", port_);
    client.set_connection_timeout(1, 0);
    auto r = client.Get(("/api/v1/query?query=" + httplib::detail::encode_query_param(q)).c_str());
    if (!r || r->status != 200) return std::nullopt;
    json j = json::parse(r->body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") return std::nullopt;
    return j["data"]["result"];
  }
  std::string Log() const {
    std::ifstream in(dir_ + "/prometheus.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string dir_;
  int port_;
  pid_t pid_ = -1;
};

TEST(Monitoring, PrometheusScrapesEveryNodeOfAThreeNodeCluster) {
  if (!HaveProgram("prometheus")) GTEST_SKIP() << "prometheus is not installed (scripts/install-deps.sh --with-tests)";
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3));
  std::vector<std::string> targets;
  for (int i : c.All()) {
    auto [host, port] = HttpOf(c, i);
    ASSERT_GT(port, 0);
    targets.push_back(host + ":" + std::to_string(port));
  }
  Prometheus prom(c.root(), targets);
  // All three targets up, and each says it sees 3 alive members.
  json up, alive;
  bool ok = WaitFor(
      [&] {
        auto u = prom.Query("up{job=\"starling\"}");
        auto a = prom.Query("starling_members{status=\"alive\"}");
        if (!u || !a) return false;
        up = *u;
        alive = *a;
        if (up.size() != 3 || alive.size() != 3) return false;
        for (const auto& s : up)
          if (s["value"][1] != "1") return false;
        for (const auto& s : alive)
          if (s["value"][1] != "3") return false;
        return true;
      },
      60s, 500ms);
  EXPECT_TRUE(ok) << "up: " << up.dump() << "\nalive: " << alive.dump() << "\n" << prom.Log();
  std::set<std::string> instances;
  for (const auto& s : up) instances.insert(s["metric"].value("instance", ""));
  EXPECT_EQ(instances, std::set<std::string>(targets.begin(), targets.end()));
}

TEST(Monitoring, PromtoolAcceptsEveryNodesMetricsAndTheExampleRules) {
  if (!HaveProgram("promtool")) GTEST_SKIP() << "promtool is not installed (scripts/install-deps.sh --with-tests)";
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3));
  for (int i : c.All()) {
    Got m = HttpGet(HttpOf(c, i), "/metrics");
    ASSERT_EQ(m.status, 200);
    for (const char* family :
         {"starling_members{status=\"alive\"} 3", "starling_build_info{version=", "starling_health_score ",
          "starling_probe_rtt_seconds_bucket{le=\"+Inf\"}", "starling_gossip_messages_sent_total{type=\"ping\"}",
          "starling_keyring_keys 0", "starling_bad_packets_total{reason=\"auth\"} 0",
          "starling_desired_state_info{", "starling_lease_ballot ", "process_resident_memory_bytes ",
          "process_cpu_seconds_total "})
      EXPECT_NE(m.body.find(family), std::string::npos) << family;
    std::string file = c.root() + "/metrics-" + std::to_string(i) + ".txt";
    std::ofstream(file) << m.body;
    CommandResult r = RunCommand({"/bin/sh", "-c", "promtool check metrics < " + file}, 20s);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(r.out + r.err, "") << "promtool lint findings";
  }
  CommandResult rules = RunCommand({"/usr/bin/env", "promtool", "check", "rules", STARLING_EXAMPLES "/prometheus/alerts.yml"}, 20s);
  EXPECT_EQ(rules.exit_code, 0) << rules.out << rules.err;
  CommandResult config =
      RunCommand({"/usr/bin/env", "promtool", "check", "config", STARLING_EXAMPLES "/prometheus/prometheus.yml"}, 20s);
  EXPECT_EQ(config.exit_code, 0) << config.out << config.err;
}

TEST(Monitoring, JsonEndpointsSayWhatTheCliSays) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3));
  auto at = HttpOf(c, 1);
  std::string doc = c.root() + "/doc.yaml";
  std::ofstream(doc) << "roles: [web]\npackages:\n  web: {version: \"1.0\", roles: [web]}\n"
                         "services:\n  db:\n    params: {DB_PASSWORD: hunter2, PORT: 5432}\n";
  ASSERT_EQ(c.Cli(0, {"apply", "-f", doc}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return c.Info(1) && !c.Info(1)->value("revision", "").empty(); }, 10s));

  auto members = GetJson(at, "/v1/members");
  ASSERT_TRUE(members);
  ASSERT_EQ(members->size(), 3u);
  for (const auto& m : *members) {
    EXPECT_EQ(m.value("status", ""), "alive");
    EXPECT_FALSE(m.value("addr", "").empty());
  }
  EXPECT_EQ((*members)[0].value("name", ""), "node0");

  auto info = GetJson(at, "/v1/info");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->value("name", ""), "node1");
  EXPECT_EQ((*info)["members"].value("alive", 0), 3);
  EXPECT_EQ(info->value("phase", ""), "serving");

  // The state as of now: the CLI's revision and document.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto state = GetJson(at, "/v1/state");
        auto cli = c.Info(1);
        return state && cli && state->value("revision", "") == cli->value("revision", "") &&
               (*state)["document"]["packages"]["web"].value("version", "") == "1.0";
      },
      10s));
  // But never a param's value: any client, any process on the machine, reads HTTP.
  Got state = HttpGet(at, "/v1/state");
  EXPECT_EQ(state.body.find("hunter2"), std::string::npos) << state.body;
  EXPECT_EQ(state.body.find("5432"), std::string::npos) << state.body;
  EXPECT_NE(state.body.find("\"DB_PASSWORD\":\"(hidden: starling get --show-params)\""), std::string::npos)
      << state.body;
  for (const auto& path : {"/v1/nodes", "/v1/rollout", "/v1/info", "/metrics"})
    EXPECT_EQ(HttpGet(at, path).body.find("hunter2"), std::string::npos) << path;
  CommandResult shown = c.Cli(1, {"get", "--show-params"});
  EXPECT_NE(shown.out.find("hunter2"), std::string::npos) << "asked for on the socket, the value is there";

  auto rollout = GetJson(at, "/v1/rollout");
  ASSERT_TRUE(rollout);
  EXPECT_EQ(rollout->value("state", ""), "idle");
  auto nodes = GetJson(at, "/v1/nodes");
  ASSERT_TRUE(nodes);
  EXPECT_EQ(nodes->size(), 3u);

  Got missing = HttpGet(at, "/v1/nope");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("/v1/members"), std::string::npos);
  httplib::Client client(at.first, at.second);
  auto post = client.Post("/v1/state", "{}", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
}

// A start hook that fails printing 300 euro signs and terminal escapes: its
// word reaches the rollout's reason cut where a character starts and with the
// escapes written out, and `rollout status` and /v1/rollout show it (such
// output once made them answer "internal error" and 500).
TEST(Monitoring, AHooksNonAsciiAndEscapeOutputIsShownNotAnError) {
  LocalCluster c;
  const std::string hooks = c.root() + "/hooks";
  ASSERT_EQ(mkdir(hooks.c_str(), 0700), 0);
  auto hook = [&](const std::string& name, const std::string& body) {
    const std::string path = hooks + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    ASSERT_EQ(chmod(path.c_str(), 0700), 0);
  };
  hook("euro-start",
       "i=0; while [ $i -lt 300 ]; do printf '\\342\\202\\254'; i=$((i+1)); done; printf '\\033[2J\\377'; exit 1");
  hook("euro-stop", "exit 0");
  hook("euro-health", "exit 0");
  ASSERT_TRUE(c.StartConverged(2, 20s, {"--hooks-dir", hooks, "--tag", "roles=web"}));
  const std::string doc = c.root() + "/doc.yaml";
  std::ofstream(doc) << "roles: [web]\nswitches: {auto_commission: true}\nservices:\n  euro:\n    roles: [web]\n"
                        "    hooks: {start: euro-start, stop: euro-stop, health: euro-health}\n";
  ASSERT_EQ(c.Cli(0, {"apply", "-f", doc}).exit_code, 0);
  CommandResult start;
  ASSERT_TRUE(WaitFor([&] { return (start = c.Cli(0, {"rollout", "start"})).exit_code == 0; }, 30s)) << start.err;
  CommandResult watch = c.Cli(0, {"rollout", "status", "--watch"}, 60s);
  EXPECT_EQ(watch.exit_code, 3) << watch.out << watch.err;  // failed
  EXPECT_EQ(watch.out.find('\x1b'), std::string::npos) << "a raw escape reached the terminal";

  CommandResult status = c.Cli(1, {"rollout", "status", "--format", "json"});
  ASSERT_EQ(status.exit_code, 0) << status.out << status.err;
  json s = json::parse(status.out, nullptr, false);
  ASSERT_TRUE(s.is_object()) << status.out;
  const std::string reason = s.value("reason", "");
  EXPECT_NE(reason.find("start hook euro-start"), std::string::npos) << reason;
  EXPECT_NE(reason.find("start hook euro-start: exit 1: ...\xE2\x82\xAC\xE2\x82\xAC"), std::string::npos) << reason;
  // The node's own report carries the end of the output, escapes written out.
  std::function<bool(const json&)> has_tail = [&](const json& j) {
    if (j.is_string()) return j.get<std::string>().find("\xE2\x82\xAC\\x1b[2J\xEF\xBF\xBD") != std::string::npos;
    if (!j.is_structured()) return false;  // a number iterates as itself
    for (const auto& v : j) if (has_tail(v)) return true;
    return false;
  };
  EXPECT_TRUE(has_tail(s["nodes"])) << s.dump(2);
  Got http = HttpGet(HttpOf(c, 1), "/v1/rollout");
  EXPECT_EQ(http.status, 200) << http.body;
  EXPECT_EQ(json::parse(http.body, nullptr, false).value("reason", ""), reason);
}

// A value from /proc/PID/status ("VmRSS", "Threads"), as a number (kB for sizes).
double ProcStatus(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1));
  return -1;
}

// More hostile clients than the listener's 256 connections (idle, slowloris,
// and clients that pipeline /metrics and never read), opened by
// starling-hostile: /health, probed on fresh connections as a load balancer
// does, is answered every time, and /metrics too; the node's threads stay as
// they were and its memory comes back. (The old server, a thread per
// connection, answered nothing while 200 idle connections were open.)
TEST(Monitoring, HealthAnswersWhileIdleSlowAndGreedyClientsHoldConnections) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(1));
  auto [host, port] = HttpOf(c, 0);
  ASSERT_GT(port, 0);
  const pid_t pid = c.node(0).pid;
  ASSERT_EQ(HttpGet({host, port}, "/metrics").status, 200);  // the first scrape's allocations
  const double rss_before = ProcStatus(pid, "VmRSS"), threads_before = ProcStatus(pid, "Threads");
  // The tool writes "ready" once every hostile client is open, probes, then
  // holds them 2 s more: the node is read while they are all open.
  const std::string out = c.root() + "/hostile.out", err = c.root() + "/hostile.err";
  pid_t tool = fork();
  ASSERT_GE(tool, 0);
  if (tool == 0) {
    if (!freopen(out.c_str(), "w", stdout) || !freopen(err.c_str(), "w", stderr)) _exit(126);
    const std::string at = host + ":" + std::to_string(port);
    execl(STARLING_HOSTILE_PATH, STARLING_HOSTILE_PATH, "--http", at.c_str(), "--idle", "400", "--slowloris", "40",
          "--nonreaders", "10", "--probes", "50", "--hold", "2", static_cast<char*>(nullptr));
    _exit(127);
  }
  auto file = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  EXPECT_TRUE(WaitFor([&] { return file(err).find("ready") != std::string::npos; }, 60s)) << file(err);
  const double threads_during = ProcStatus(pid, "Threads");
  int status = 0;
  ASSERT_EQ(waitpid(tool, &status, 0), tool);
  const double rss_most = ProcStatus(pid, "VmHWM");  // the peak since start, this flood included
  CommandResult r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, file(out), file(err)};
  std::printf("%s", r.out.c_str());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json figures = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(figures.is_object()) << r.out;
  EXPECT_EQ(figures["during"]["ok"], 50);
  EXPECT_GE(figures.value("hostile_open", 0), 400);

  Got m = HttpGet({host, port}, "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("starling_connections_refused_total{listener=\"http\",reason=\"evicted\"}"), std::string::npos)
      << m.body;
  EXPECT_EQ(m.body.find("starling_connections_refused_total{listener=\"http\",reason=\"evicted\"} 0\n"), std::string::npos)
      << "more clients than the cap, and none evicted";
  // Memory comes back once they are gone (the buffers are the connections').
  double rss_after = rss_before;
  WaitFor([&] { return (rss_after = ProcStatus(pid, "VmRSS")) <= rss_before * 1.1 + 2048; }, 10s);
  std::printf("node: RSS %.1f MiB before, %.1f MiB at most, %.1f MiB after; threads %.0f before, %.0f during\n",
              rss_before / 1024, rss_most / 1024, rss_after / 1024, threads_before, threads_during);
  EXPECT_LE(rss_after, rss_before * 1.1 + 2048) << "kB";
  EXPECT_EQ(threads_during, threads_before) << "a connection cost a thread";

  // Headers past the limit are refused by status, and HEAD answers without a body.
  httplib::Client client(host, port);
  client.set_read_timeout(5, 0);
  auto big = client.Get("/health", {{"X-Big", std::string(10000, 'x')}});
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 431);
  auto head = client.Head("/health");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
  EXPECT_NE(head->get_header_value("Content-Length"), "0");
  m = HttpGet({host, port}, "/metrics");
  EXPECT_NE(m.body.find("starling_connections_refused_total{listener=\"http\",reason=\"too_large\"} 1\n"),
            std::string::npos);
  EXPECT_TRUE(c.Info(0));
}

// A page in the operator's browser that rebinds its own name to 127.0.0.1
// reaches the loopback port with that name as Host: refused, while every
// loopback name is served.
TEST(Monitoring, LoopbackHttpServesOnlyLoopbackHostNames) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(1));
  auto at = HttpOf(c, 0);
  httplib::Client client(at.first, at.second);
  client.set_read_timeout(5, 0);
  auto get = [&](const std::string& host) {
    auto r = client.Get("/v1/state", {{"Host", host}});
    return r ? r->status : 0;
  };
  const std::string port = std::to_string(at.second);
  for (const std::string& ok : std::vector<std::string>{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port, "127.0.0.1"})
    EXPECT_EQ(get(ok), 200) << ok;
  for (const std::string& evil : std::vector<std::string>{"rebind.example:" + port, "127.0.0.1.rebind.example", "0.0.0.0:" + port}) {
    EXPECT_EQ(get(evil), 403) << evil;
    auto r = client.Get("/metrics", {{"Host", evil}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << evil;
    EXPECT_NE(r->body.find("loopback names only"), std::string::npos) << r->body;
  }
}

// The same keys at every level, and the same values except where `moving`
// names a key whose value may change between two reads (counters, uptime).
void ExpectSameShape(const json& a, const json& b, const std::set<std::string>& moving, const std::string& at = "") {
  ASSERT_EQ(a.type(), b.type()) << at;
  if (a.is_object()) {
    std::set<std::string> ka, kb;
    for (const auto& [k, _] : a.items()) ka.insert(k);
    for (const auto& [k, _] : b.items()) kb.insert(k);
    ASSERT_EQ(ka, kb) << "keys differ at " << (at.empty() ? "the top" : at);
    for (const auto& k : ka) {
      if (moving.count(k)) {
        // A moving value: same type, and for an object the same keys.
        ASSERT_EQ(a[k].type(), b[k].type()) << at << "." << k;
        if (a[k].is_object()) {
          std::set<std::string> ca, cb;
          for (const auto& [c, _] : a[k].items()) ca.insert(c);
          for (const auto& [c, _] : b[k].items()) cb.insert(c);
          EXPECT_EQ(ca, cb) << at << "." << k;
        }
        continue;
      }
      ExpectSameShape(a[k], b[k], moving, at + "." + k);
    }
  } else {
    EXPECT_EQ(a, b) << "at " << at;
  }
}

// The README promises that /v1/members and /v1/info are `starling members
// --format json` and `starling info --format json`.
TEST(Monitoring, MembersAndInfoEndpointsAreTheCliJson) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3, 30s, {"--tag", "zone=a"}));
  auto at = HttpOf(c, 2);
  auto http_members = GetJson(at, "/v1/members");
  auto cli_members = c.Members(2);
  ASSERT_TRUE(http_members && cli_members);
  EXPECT_EQ(*http_members, *cli_members) << http_members->dump() << "\n" << cli_members->dump();

  auto http_info = GetJson(at, "/v1/info");
  auto cli_info = c.Info(2);
  ASSERT_TRUE(http_info && cli_info);
  // Read one after the other: counters and uptime may have moved on.
  ExpectSameShape(*http_info, *cli_info, {"counters", "uptime_seconds"});
  EXPECT_EQ(cli_info->value("phase", ""), "serving");
}

TEST(Monitoring, HealthTurns503WhileLeaving) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(2));
  auto at = HttpOf(c, 1);
  Got before = HttpGet(at, "/health");
  EXPECT_EQ(before.status, 200);
  EXPECT_NE(before.body.find("serving"), std::string::npos);
  c.Signal(1, SIGTERM);  // a graceful leave: about 2 s of telling the others
  Got during;
  WaitFor(
      [&] {
        during = HttpGet(at, "/health");
        return during.status == 503 || during.status == 0;
      },
      5s, 10ms);
  EXPECT_EQ(during.status, 503) << "the daemon went away before /health said it was leaving";
  EXPECT_NE(during.body.find("leaving"), std::string::npos) << during.body;
  EXPECT_TRUE(c.WaitExit(1, 15s).has_value());
}

TEST(Monitoring, MonitorStreamsEventsAndLogLines) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3));
  CommandResult watched;
  std::thread monitor([&] { watched = c.Cli(0, {"monitor", "--log-level", "debug"}, 6s); });
  // Once the daemon says the monitor is connected, make news.
  ASSERT_TRUE(WaitFor([&] { return c.LogOf(0, 50).find("a monitor connected") != std::string::npos; }, 5s));
  ASSERT_EQ(c.Cli(2, {"leave"}).exit_code, 0);
  monitor.join();
  EXPECT_EQ(watched.exit_code, CommandResult::kTimedOut) << "it streams until stopped";
  EXPECT_NE(watched.out.find("monitoring node0 at level debug"), std::string::npos) << watched.out;
  EXPECT_NE(watched.out.find("member-leave node2"), std::string::npos) << watched.out;
  CommandResult bad = c.Cli(0, {"monitor", "--log-level", "loud"});
  EXPECT_NE(bad.exit_code, 0);
}

TEST(Monitoring, JsonLogLinesParse) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0", {"--log-format", "json"}), 0);
  ASSERT_TRUE(WaitFor([&] { return c.LogOf(0).find("starlingd") != std::string::npos; }, 5s));
  std::istringstream lines(c.LogOf(0, 1000));
  std::string line;
  int parsed = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line.rfind("-----", 0) == 0) continue;  // the test's own banner
    json j = json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_TRUE(j.contains("time") && j.contains("level") && j.contains("msg")) << line;
    ++parsed;
  }
  EXPECT_GT(parsed, 0);
}

}  // namespace
}  // namespace starling::itest

namespace starling::itest {
namespace {

// The console's side of the HTTP port: its pages are served from the binary,
// the event stream names what changed, and an action is taken only with the
// token, from no other origin, as JSON.
TEST(Console, PagesEventStreamAndActionsThatNeedTheToken) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(2, 30s, {"--ui-write"}));
  const auto at = HttpOf(c, 0);
  ASSERT_GT(at.second, 0);
  httplib::Client client(at.first, at.second);
  client.set_read_timeout(15, 0);

  auto page = client.Get("/ui/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->get_header_value("Content-Type").find("text/html"), std::string::npos);
  EXPECT_NE(page->body.find("/ui/app.js"), std::string::npos);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("default-src 'self'"), std::string::npos);
  auto script = client.Get("/ui/app.js");
  ASSERT_TRUE(script);
  EXPECT_EQ(script->status, 200);
  EXPECT_GT(script->body.size(), 1000u);
  auto root = client.Get("/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->status, 302);
  EXPECT_EQ(root->get_header_value("Location"), "/ui/");
  EXPECT_EQ(client.Get("/ui/nope.js")->status, 404);

  // The token file is owner-only, and the CLI reads the token over the socket.
  struct stat st {};
  ASSERT_EQ(stat((c.node(0).dir + "/ui-token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  CommandResult token = c.Cli(0, {"ui", "token"});
  ASSERT_EQ(token.exit_code, 0) << token.err;
  const std::string tok = token.out.substr(0, token.out.find('\n'));
  EXPECT_EQ(tok.size(), 64u);
  CommandResult url = c.Cli(0, {"ui", "url"});
  EXPECT_NE(url.out.find("/ui/#token=" + tok), std::string::npos) << url.out;

  // A reader of the event stream hears "state" once the desired state moves.
  std::atomic<bool> hello{false}, heard_state{false};
  std::string seen;
  std::thread reader([&] {
    httplib::Client events(at.first, at.second);
    events.set_read_timeout(15, 0);
    events.Get("/v1/events", [&](const char* data, size_t n) {
      seen.append(data, n);
      if (seen.find("event: hello") != std::string::npos) hello = true;
      if (seen.find("event: change") != std::string::npos && seen.find("\"state\"") != std::string::npos) {
        heard_state = true;
        return false;
      }
      return seen.size() < (1 << 20);
    });
  });
  EXPECT_TRUE(WaitFor([&] { return hello.load(); }, 10s, 50ms)) << "no hello on the event stream";
  CommandResult frozen = c.Cli(1, {"freeze", "--reason", "console test"});
  ASSERT_EQ(frozen.exit_code, 0) << frozen.err;
  reader.join();
  EXPECT_TRUE(heard_state.load()) << seen;

  auto still_frozen = [&] {
    auto state = GetJson(at, "/v1/state");
    return state && (*state)["document"].value("freeze", json(false)).is_object();
  };
  const std::string body = "{}";
  for (const httplib::Headers& h :
       {httplib::Headers{}, httplib::Headers{{"X-Starling-Token", std::string(64, '0')}},
        httplib::Headers{{"X-Starling-Token", tok}, {"Origin", "http://evil.example"}}}) {
    auto r = client.Post("/v1/unfreeze", h, body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << r->body;
    EXPECT_TRUE(still_frozen());
  }
  auto not_json = client.Post("/v1/unfreeze", httplib::Headers{{"X-Starling-Token", tok}}, "x=1",
                              "application/x-www-form-urlencoded");
  ASSERT_TRUE(not_json);
  EXPECT_EQ(not_json->status, 415);
  EXPECT_TRUE(still_frozen());
  // The same action the CLI would refuse is refused with the CLI's words.
  auto refused = client.Post("/v1/lifecycle", httplib::Headers{{"X-Starling-Token", tok}},
                             R"({"nodes": ["node1"], "to": "decommissioned"})", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 409) << refused->body;
  EXPECT_NE(refused->body.find("frozen"), std::string::npos) << refused->body;
  auto ok = client.Post("/v1/unfreeze",
                        httplib::Headers{{"X-Starling-Token", tok}, {"Origin", "http://" + at.first + ":" +
                                                                                   std::to_string(at.second)}},
                        body, "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_FALSE(still_frozen());
}

// Without --ui-write the console only shows, whatever the token.
TEST(Console, WithoutUiWriteEveryActionIsRefused) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(1));
  const auto at = HttpOf(c, 0);
  CommandResult token = c.Cli(0, {"ui", "token"});
  ASSERT_EQ(token.exit_code, 0) << token.err;
  EXPECT_NE(token.err.find("read-only"), std::string::npos) << token.err;
  httplib::Client client(at.first, at.second);
  auto r = client.Post("/v1/freeze", httplib::Headers{{"X-Starling-Token", token.out.substr(0, 64)}},
                       R"({"reason": "x"})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("--ui-write"), std::string::npos) << r->body;
  auto state = GetJson(at, "/v1/state");
  ASSERT_TRUE(state);
  EXPECT_FALSE((*state)["document"].value("freeze", json(false)).is_object());
}

}  // namespace
}  // namespace starling::itest
