// Mixed releases on one cluster: this build's starlingd beside
// starlingd-next (the same objects with a newer version unit: release
// 0.<minor+1>.0, protocol 1-3), observed through the CLI as an operator
// would.
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <fstream>
#include <sstream>

#include "local_cluster.h"

namespace starling::itest {
namespace {

constexpr Millis kConverge = 30s;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ReleaseOf(const std::string& binary) {
  CommandResult r = RunCommand({binary, "--version"});
  // "starlingd 0.1.0 (build ..., protocol 1-2)"
  const size_t a = r.out.find(' ') + 1;
  return r.out.substr(a, r.out.find(' ', a) - a);
}

const nlohmann::json* Find(const nlohmann::json& rows, const std::string& name) {
  for (const auto& r : rows)
    if (r.value("name", "") == name) return &r;
  return nullptr;
}

TEST(Upgrade, EveryMemberShowsTheReleaseItRunsAndTheProtocolItSpeaks) {
  const std::string old_release = ReleaseOf(STARLINGD_PATH), next_release = ReleaseOf(STARLINGD_NEXT_PATH);
  ASSERT_NE(old_release, next_release);
  LocalCluster c;
  ASSERT_EQ(c.Start("old-a"), 0);
  ASSERT_EQ(c.Start("old-b", {"--join", c.node(0).addr}), 1);
  c.SetBinary(STARLINGD_NEXT_PATH);
  ASSERT_EQ(c.Start("next-a", {"--join", c.node(0).addr}), 2);
  ASSERT_EQ(c.Start("next-b", {"--join", c.node(0).addr, "--protocol", "1"}), 3);
  ASSERT_EQ(c.AwaitView(c.All(), c.AllAlive(), kConverge), "");

  struct Want {
    std::string release;
    int max, current;
  };
  const std::map<std::string, Want> want = {{"old-a", {old_release, 2, 2}},
                                            {"old-b", {old_release, 2, 2}},
                                            {"next-a", {next_release, 3, 2}},
                                            {"next-b", {next_release, 3, 1}}};
  for (int i : c.All()) {
    SCOPED_TRACE(c.node(i).name);
    std::optional<nlohmann::json> members = c.Members(i);
    ASSERT_TRUE(members);
    CommandResult nodes = c.Cli(i, {"nodes", "--format", "json"});
    ASSERT_EQ(nodes.exit_code, 0) << nodes.err;
    const nlohmann::json rows = nlohmann::json::parse(nodes.out);
    for (const auto& [name, w] : want) {
      SCOPED_TRACE(name);
      for (const nlohmann::json* m : {Find(*members, name), Find(rows, name)}) {
        ASSERT_NE(m, nullptr);
        EXPECT_EQ((*m)["version"], w.release);
        EXPECT_EQ((*m)["protocol"]["min"], 1);
        EXPECT_EQ((*m)["protocol"]["max"], w.max);
        EXPECT_EQ((*m)["protocol"]["current"], w.current);
      }
    }
  }
  // The table an operator reads.
  CommandResult table = c.Cli(0, {"members", "--detailed"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("VERSION"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(next_release), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("1 (1-3)"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("2 (1-2)"), std::string::npos) << table.out;
  std::optional<nlohmann::json> info = c.Info(3);
  ASSERT_TRUE(info);
  EXPECT_EQ((*info)["version"], next_release);
  EXPECT_EQ((*info)["protocol"]["current"], 1);
  EXPECT_EQ((*info)["protocol"]["max"], 3);
}

TEST(Upgrade, AJoinAcrossProtocolsThatDoNotOverlapIsRefusedOnBothSides) {
  // The cluster moved on to protocol 3; a node of the old release cannot
  // read it. Then the other way: a node told to speak 3 into old nodes.
  for (bool old_joins : {true, false}) {
    SCOPED_TRACE(old_joins ? "old into next" : "next speaking 3 into old");
    LocalCluster c;
    if (!old_joins) c.SetBinary(STARLINGD_PATH);
    else c.SetBinary(STARLINGD_NEXT_PATH);
    const std::vector<std::string> cluster_args =
        old_joins ? std::vector<std::string>{"--protocol", "3"} : std::vector<std::string>{};
    ASSERT_EQ(c.Start("seed", cluster_args), 0);
    std::vector<std::string> second = cluster_args;
    second.insert(second.end(), {"--join", c.node(0).addr});
    ASSERT_EQ(c.Start("member", second), 1);
    ASSERT_EQ(c.AwaitView(c.All(), c.AllAlive(), kConverge), "");

    c.SetBinary(old_joins ? STARLINGD_PATH : STARLINGD_NEXT_PATH);
    std::vector<std::string> joiner_args = {"--join", c.node(0).addr};
    if (!old_joins) joiner_args.insert(joiner_args.end(), {"--protocol", "3"});
    const int j = c.Launch("joiner", joiner_args);
    std::optional<int> code = c.WaitExit(j, 20s);
    ASSERT_TRUE(code.has_value()) << "the refused node should exit, not retry for ever";
    EXPECT_NE(*code, 0);
    const std::string joiner_log = Slurp(c.node(j).log), seed_log = Slurp(c.node(0).log);
    const std::string joiner_range = old_joins ? "1-2" : "speaks protocol 3";
    const std::string cluster_range = old_joins ? "understands 1-3 and speaks 3" : "understands protocol 1-2";
    for (const std::string* log : {&joiner_log, &seed_log}) {
      SCOPED_TRACE(log == &joiner_log ? "joiner's log" : "seed's log");
      EXPECT_NE(log->find(joiner_range), std::string::npos) << *log;
      EXPECT_NE(log->find(cluster_range), std::string::npos) << *log;
    }
    EXPECT_NE(seed_log.find("refused"), std::string::npos);
    std::optional<nlohmann::json> members = c.Members(0);
    ASSERT_TRUE(members);
    EXPECT_EQ(Find(*members, "joiner"), nullptr) << members->dump();
  }
}

TEST(Upgrade, AProtocolOutsideTheBinarysRangeIsRefusedAtStart) {
  CommandResult r = RunCommand({STARLINGD_PATH, "--protocol", "3", "--data-dir", "/nonexistent/x"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--protocol 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("understands protocol 1-2"), std::string::npos) << r.err;
}


std::string Keygen() {
  CommandResult r = RunCommand({STARLING_CLI_PATH, "keygen"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out.substr(0, r.out.find('\n'));
}

// Every file under `dir` (path -> content), to show a refusal changed nothing.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[e.path().string()] = Slurp(e.path().string());
  return out;
}

// What must survive a migration and a restore.
struct Kept {
  std::string revision, digest, history, tags;
  uint64_t ballot = 0;
  // Everything but the ballot, which moves on at every lease.
  bool operator==(const Kept& o) const {
    return revision == o.revision && digest == o.digest && history == o.history && tags == o.tags;
  }
};
void PrintTo(const Kept& k, std::ostream* os) { *os << k.revision << " " << k.digest << " " << k.tags << " " << k.history; }
Kept KeptOf(const LocalCluster& c, int i) {
  Kept k;
  std::optional<nlohmann::json> info = c.Info(i);
  EXPECT_TRUE(info);
  if (!info) return k;
  k.revision = (*info)["revision"];
  k.digest = (*info)["digest"];
  k.ballot = (*info)["lease"]["ballot"];
  k.tags = (*info)["tags"].dump();
  k.history = c.Cli(i, {"history", "--format", "json"}).out;
  return k;
}

TEST(Upgrade, ANewerReleaseMigratesTheDataDirAndAnOlderOneRefusesItUntilTheBackupIsRestored) {
  LocalCluster c;
  const std::string key = Keygen();
  ASSERT_EQ(c.Start("solo", {"--encrypt", key}), 0);
  const std::string dir = c.node(0).dir;
  const std::string doc = WriteFile(c, "doc.yaml",
                                    "roles: [web]\npackages:\n  web: {version: \"1.0\", roles: [web]}\n"
                                    "policy: {batch: 1}\n");
  ASSERT_EQ(c.Cli(0, {"apply", "-f", doc}).exit_code, 0);
  ASSERT_EQ(c.Cli(0, {"tags", "--set", "zone=a"}).exit_code, 0);
  // The lease is held (a ballot promised and saved) before the daemon stops.
  ASSERT_TRUE(WaitFor([&] { return KeptOf(c, 0).ballot > 0; }, 20s));
  const Kept before = KeptOf(c, 0);
  ASSERT_FALSE(before.revision.empty());
  c.Signal(0, SIGTERM);
  ASSERT_EQ(c.WaitExit(0, 20s), std::optional<int>(0));
  EXPECT_EQ(Slurp(dir + "/format"), "starling data dir format 2\n");
  CommandResult check = RunCommand({STARLINGD_NEXT_PATH, "--data-dir", dir, "--check-data-dir"});
  EXPECT_EQ(check.exit_code, 0) << check.out;
  EXPECT_NE(check.out.find("migrates it to format 3 at start, after copying it to " + dir + "/backup-2"),
            std::string::npos)
      << check.out;

  // The next release migrates it, after a copy, and keeps everything.
  c.UseBinary(0, STARLINGD_NEXT_PATH);
  ASSERT_TRUE(c.Restart(0));
  // Its next lease is above every ballot it promised before.
  ASSERT_TRUE(WaitFor([&] { return KeptOf(c, 0).ballot > before.ballot; }, 20s));
  const Kept next = KeptOf(c, 0);
  EXPECT_EQ(next, before);
  EXPECT_EQ(Slurp(dir + "/format"), "starling data dir format 3\n");
  EXPECT_EQ(Slurp(dir + "/backup-2/format"), "starling data dir format 2\n");
  EXPECT_EQ(Slurp(dir + "/backup-2/keyring"), Slurp(dir + "/keyring"));
  EXPECT_NE(Slurp(c.node(0).log).find("migrated from format 2 to 3"), std::string::npos);
  c.Signal(0, SIGTERM);
  ASSERT_EQ(c.WaitExit(0, 20s), std::optional<int>(0));

  // The old release refuses it and touches nothing.
  const auto files = Snapshot(dir);
  c.UseBinary(0, STARLINGD_PATH);
  const std::string old_release = ReleaseOf(STARLINGD_PATH);
  for (const auto& args : {std::vector<std::string>{STARLINGD_PATH, "--data-dir", dir, "--check-data-dir"},
                           std::vector<std::string>{STARLINGD_PATH, "--data-dir", dir, "--name", "solo", "--bind",
                                                    "127.0.0.1:0", "--http", "off", "--socket", dir + "/x.sock"}}) {
    CommandResult r = RunCommand(args);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    const std::string said = r.out + r.err;
    for (const std::string& part : {std::string("is format 3"), std::string("this starlingd ") + old_release,
                                    std::string("reads formats up to 2"), std::string("--restore-backup backup-2")})
      EXPECT_NE(said.find(part), std::string::npos) << part << " in: " << said;
  }
  EXPECT_EQ(Snapshot(dir), files) << "the refusal changed the data dir";

  // The copy restores it: the old release runs on what it had.
  CommandResult restore = RunCommand({STARLINGD_PATH, "--data-dir", dir, "--restore-backup", "backup-2"});
  ASSERT_EQ(restore.exit_code, 0) << restore.err;
  EXPECT_EQ(Slurp(dir + "/format"), "starling data dir format 2\n");
  EXPECT_TRUE(std::filesystem::exists(dir + "/replaced-3/format")) << "what it replaced is kept";
  ASSERT_TRUE(c.Restart(0, {"--encrypt", key}));
  // Not back to the copy's ballot: above what the newer release promised.
  ASSERT_TRUE(WaitFor([&] { return KeptOf(c, 0).ballot > next.ballot; }, 20s));
  EXPECT_EQ(KeptOf(c, 0), before);
}

TEST(Upgrade, ARestoreIsRefusedWhileTheDaemonRunsAndForWhatIsNotABackup) {
  LocalCluster c;
  ASSERT_EQ(c.Start("solo"), 0);
  const std::string dir = c.node(0).dir;
  c.Signal(0, SIGTERM);
  ASSERT_EQ(c.WaitExit(0, 20s), std::optional<int>(0));
  c.UseBinary(0, STARLINGD_NEXT_PATH);
  ASSERT_TRUE(c.Restart(0));
  CommandResult running = RunCommand({STARLINGD_NEXT_PATH, "--data-dir", dir, "--restore-backup", "backup-2"});
  EXPECT_EQ(running.exit_code, 1);
  EXPECT_NE(running.err.find("runs on data dir"), std::string::npos) << running.err;
  for (const std::string bad : {"../x", "keyring", "backup-9"}) {
    CommandResult r = RunCommand({STARLINGD_NEXT_PATH, "--data-dir", dir, "--restore-backup", bad});
    EXPECT_EQ(r.exit_code, 1) << bad;
    EXPECT_NE(r.err.find(bad == std::string("backup-9") ? "no backup" : "name a backup-N directory"),
              std::string::npos)
        << r.err;
  }
  std::optional<nlohmann::json> info = c.Info(0);
  EXPECT_TRUE(info) << "the daemon still runs";
}

// ---- agent upgrades ------------------------------------------------------------------------

constexpr int kNodes = 5;

// A service that is a real process: the start hook leaves `sleep` running
// and records its pid; stop kills it; health checks it lives.
const char* kServiceHook = R"sh(#!/bin/sh
set -eu
pidfile="$STARLING_DATA_DIR/svc.pid"
case "$STARLING_HOOK" in
  start) sleep 100000 </dev/null >/dev/null 2>&1 &
         echo $! >"$pidfile" ;;
  stop) if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi ;;
  health) kill -0 "$(cat "$pidfile")" ;;
esac
)sh";

// The node deadline leaves room for a restart in place on a loaded CI
// machine: a node past it is reverted, which these tests do not expect.
std::string ServiceDoc(const std::string& version, const std::string& batch = "2") {
  return "roles: [web]\n"
         "packages:\n"
         "  app: {version: \"" + version + "\", roles: [web], restart: false}\n"
         "services:\n"
         "  svc: {package: app, roles: [web], hooks: {start: svc, stop: svc, health: svc}}\n"
         "policy: {batch: " + batch + ", min_healthy: 0s, node_deadline: 60s, auto_revert: true}\n"
         "switches: {auto_commission: true}\n";
}

// Five nodes, each running its own copy of `binary` (a swap replaces only
// its copy), with the service hook.
class AgentCluster {
 public:
  explicit AgentCluster(const std::string& binary) {
    hooks_ = c.root() + "/hooks";
    std::filesystem::create_directories(hooks_);
    std::filesystem::permissions(hooks_, std::filesystem::perms(0755));
    WriteExecutable(hooks_ + "/svc", kServiceHook);
    for (int i = 0; i < kNodes; ++i) {
      const std::string dir = c.root() + "/bin" + std::to_string(i);
      std::filesystem::create_directories(dir);
      std::filesystem::copy_file(binary, dir + "/starlingd");
      c.SetBinary(dir + "/starlingd");
      std::vector<std::string> args = {"--hooks-dir", hooks_, "--tag", "roles=web"};
      if (i > 0) args.insert(args.end(), {"--join", c.node(0).addr});
      EXPECT_EQ(c.Start("n" + std::to_string(i), args), i);
    }
  }
  ~AgentCluster() {
    for (pid_t p : Services()) kill(p, SIGKILL);
    for (pid_t p : extra_) kill(p, SIGKILL);
  }
  static void WriteExecutable(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
    std::filesystem::permissions(path, std::filesystem::perms(0755));
  }
  // The service's pid on every node (0: none).
  std::vector<pid_t> Services() const {
    std::vector<pid_t> out;
    for (int i : c.All()) out.push_back(static_cast<pid_t>(std::atoi(Slurp(c.node(i).dir + "/svc.pid").c_str())));
    return out;
  }
  std::vector<int64_t> DaemonPids() const {
    std::vector<int64_t> out;
    for (int i : c.All()) {
      auto info = c.Info(i);
      out.push_back(info ? (*info)["pid"].get<int64_t>() : 0);
    }
    return out;
  }
  // name -> release, as node `i` sees the members.
  std::map<std::string, std::string> Releases(int i) const {
    std::map<std::string, std::string> out;
    if (auto m = c.Members(i))
      for (const auto& r : *m) out[r["name"]] = r.value("version", "");
    return out;
  }
  nlohmann::json Rollout(int i) const {
    CommandResult r = c.Cli(i, {"rollout", "status", "--format", "json"});
    return r.exit_code == 0 ? nlohmann::json::parse(r.out, nullptr, false) : nlohmann::json();
  }
  // Waits for rollout `id` to reach one of `states`; its status, or null.
  nlohmann::json AwaitRollout(int i, uint64_t id, std::set<std::string> states, Millis timeout = 120s) const {
    nlohmann::json last;
    WaitFor([&] {
      last = Rollout(i);
      return last.is_object() && last.value("id", 0u) == id && states.count(last.value("state", ""));
    }, timeout);
    return last.is_object() && last.value("id", 0u) == id && states.count(last.value("state", "")) ? last
                                                                                                      : nlohmann::json();
  }
  uint64_t AgentUpgrade(int i, const std::string& binary) const {
    CommandResult r = c.Cli(i, {"agent", "upgrade", "--binary", binary, "--format", "json"}, 120s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_object() ? j.value("rollout", 0u) : 0;
  }
  void Extra(pid_t p) { extra_.push_back(p); }

  LocalCluster c;
  std::string hooks_;
  std::vector<pid_t> extra_;
};

// Every member, as every node sees it, runs `release`. A node that missed
// a restarted member's news (gossip reaches all but a few in a hundred at
// once) learns it at its next push-pull.
testing::AssertionResult EveryoneRuns(const AgentCluster& a, const std::string& release) {
  std::string last;
  bool ok = WaitFor([&] {
    for (int i : a.c.All())
      for (const auto& [name, v] : a.Releases(i))
        if (v != release) {
          last = name + " runs " + v + " as n" + std::to_string(i) + " sees it";
          return false;
        }
    return true;
  }, 60s);
  return ok ? testing::AssertionSuccess() : testing::AssertionFailure() << last;
}

uint64_t StartServiceRollout(AgentCluster& a, const std::string& version, const std::string& batch = "2") {
  const std::string doc = WriteFile(a.c, "doc-" + version + ".yaml", ServiceDoc(version, batch));
  CommandResult applied = a.c.Cli(0, {"apply", "-f", doc});
  EXPECT_EQ(applied.exit_code, 0) << applied.err;
  CommandResult r = a.c.Cli(0, {"rollout", "start", "--format", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_object() ? j.value("id", 0u) : 0;
}

// The cluster formed and the service rolled out on every node.
testing::AssertionResult RunService(AgentCluster& a, const std::string& batch) {
  if (std::string m = a.c.AwaitView(a.c.All(), a.c.AllAlive(), kConverge); !m.empty())
    return testing::AssertionFailure() << m;
  const uint64_t id = StartServiceRollout(a, "1", batch);
  if (a.AwaitRollout(0, id, {"succeeded"}).is_null()) return testing::AssertionFailure() << a.Rollout(0).dump();
  return testing::AssertionSuccess();
}

TEST(AgentUpgrade, FiveNodesMoveToTheNextReleaseAndBackWhileTheServiceKeepsRunning) {
  const std::string old_release = ReleaseOf(STARLINGD_PATH), next_release = ReleaseOf(STARLINGD_NEXT_PATH);
  AgentCluster a(STARLINGD_PATH);
  LocalCluster& c = a.c;
  ASSERT_TRUE(RunService(a, "2"));
  const uint64_t first = a.Rollout(0).value("id", 0u);
  const std::vector<pid_t> services = a.Services();
  for (pid_t p : services) ASSERT_GT(p, 0);
  const std::vector<int64_t> daemons = a.DaemonPids();

  // Up, batch by batch; paused halfway to work on a mixed cluster.
  const uint64_t up = a.AgentUpgrade(0, STARLINGD_NEXT_PATH);
  ASSERT_GT(up, first);
  ASSERT_TRUE(WaitFor([&] {
    auto r = a.Releases(0);
    return std::count_if(r.begin(), r.end(), [&](const auto& kv) { return kv.second == next_release; }) >= 2;
  }, 90s)) << a.Rollout(0).dump();
  ASSERT_EQ(c.Cli(0, {"rollout", "pause"}).exit_code, 0);
  nlohmann::json paused = a.AwaitRollout(0, up, {"paused"});
  ASSERT_FALSE(paused.is_null()) << a.Rollout(0).dump();
  ASSERT_TRUE(WaitFor([&] { return a.Rollout(0)["batch"].empty(); }, 60s)) << "the batch in flight ends";
  auto mixed = a.Releases(4);
  std::set<std::string> seen;
  for (const auto& [_, v] : mixed) seen.insert(v);
  EXPECT_EQ(seen, (std::set<std::string>{old_release, next_release})) << "members on a mixed cluster";
  // Apply works; an application rollout waits for the agent rollout.
  const std::string doc = WriteFile(c, "doc-2.yaml", ServiceDoc("2"));
  CommandResult applied = c.Cli(3, {"apply", "-f", doc});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  CommandResult queued = c.Cli(3, {"rollout", "start", "--format", "json"});
  ASSERT_EQ(queued.exit_code, 0) << queued.err;
  auto q = nlohmann::json::parse(queued.out);
  EXPECT_EQ(q.value("waits_for", 0u), up) << queued.out;
  ASSERT_EQ(c.Cli(1, {"rollout", "resume"}).exit_code, 0);
  ASSERT_FALSE(a.AwaitRollout(0, up, {"succeeded"}).is_null()) << a.Rollout(0).dump();
  EXPECT_TRUE(EveryoneRuns(a, next_release));
  // Then the application rollout, on the upgraded cluster.
  ASSERT_FALSE(a.AwaitRollout(0, q.value("id", 0u), {"succeeded"}).is_null()) << a.Rollout(0).dump();
  EXPECT_EQ(a.Services(), services) << "the service was restarted";
  EXPECT_EQ(a.DaemonPids(), daemons) << "an upgrade restarts in place (same pid)";
  CommandResult status = c.Cli(2, {"agent", "status", "--format", "json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  for (const auto& row : nlohmann::json::parse(status.out)) {
    EXPECT_EQ(row["version"], next_release);
    EXPECT_EQ(row["desired"], next_release);
    EXPECT_TRUE(row["upgraded"].get<bool>());
  }

  // And back, the same way.
  const uint64_t down = a.AgentUpgrade(2, STARLINGD_PATH);
  ASSERT_FALSE(a.AwaitRollout(0, down, {"succeeded"}).is_null()) << a.Rollout(0).dump();
  EXPECT_TRUE(EveryoneRuns(a, old_release));
  EXPECT_EQ(a.Services(), services);
  EXPECT_EQ(a.DaemonPids(), daemons);
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(AgentUpgrade, AnAbortedUpgradeLeavesAMixedClusterThatRollsOutApplicationsAndIsFinishedLater) {
  const std::string old_release = ReleaseOf(STARLINGD_PATH), next_release = ReleaseOf(STARLINGD_NEXT_PATH);
  AgentCluster a(STARLINGD_PATH);
  LocalCluster& c = a.c;
  ASSERT_TRUE(RunService(a, "1"));
  const std::vector<pid_t> services = a.Services();
  const uint64_t up = a.AgentUpgrade(0, STARLINGD_NEXT_PATH);
  ASSERT_TRUE(WaitFor([&] {
    auto r = a.Releases(0);
    return std::count_if(r.begin(), r.end(), [&](const auto& kv) { return kv.second == next_release; }) >= 2;
  }, 90s)) << a.Rollout(0).dump();
  // `rollout abort` is its cancel: what is done stays done.
  ASSERT_EQ(c.Cli(0, {"rollout", "abort"}).exit_code, 0);
  ASSERT_FALSE(a.AwaitRollout(0, up, {"failed"}).is_null()) << a.Rollout(0).dump();
  ASSERT_TRUE(WaitFor([&] { return a.Rollout(0)["batch"].empty(); }, 60s));
  std::map<std::string, std::string> mixed;
  // Settled: no agent mid-move, and two releases in the cluster.
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& n : a.Rollout(0)["nodes"])
      if (n.value("agent_phase", "") != "idle") return false;
    mixed = a.Releases(0);
    std::set<std::string> seen;
    for (const auto& [_, v] : mixed) seen.insert(v);
    return seen == std::set<std::string>{old_release, next_release};
  }, 30s)) << a.Rollout(0).dump();
  // An application rollout on the mixed cluster: every node takes the new
  // package, and each keeps the starlingd it runs.
  const uint64_t app = StartServiceRollout(a, "2", "1");
  ASSERT_FALSE(a.AwaitRollout(0, app, {"succeeded"}).is_null()) << a.Rollout(0).dump();
  EXPECT_FALSE(a.Rollout(0).value("agent", true));
  EXPECT_EQ(a.Releases(0), mixed);
  // The same command finishes the upgrade, on the nodes still behind only.
  const uint64_t rest = a.AgentUpgrade(3, STARLINGD_NEXT_PATH);
  ASSERT_FALSE(a.AwaitRollout(0, rest, {"succeeded"}).is_null()) << a.Rollout(0).dump();
  EXPECT_TRUE(EveryoneRuns(a, next_release));
  for (int i : c.All())
    EXPECT_EQ(Count(Slurp(c.node(i).log), "swapped in starlingd " + next_release), 1u) << "n" << i;
  EXPECT_EQ(a.Services(), services);
}


TEST(AgentUpgrade, ABrokenBinaryStopsOnItsFirstNodeWhichGoesBackByItself) {
  const std::string old_release = ReleaseOf(STARLINGD_PATH);
  AgentCluster a(STARLINGD_PATH);
  LocalCluster& c = a.c;
  ASSERT_TRUE(RunService(a, "[1, 2]"));
  const std::vector<pid_t> services = a.Services();
  const std::vector<int64_t> daemons = a.DaemonPids();
  const std::string next = STARLINGD_NEXT_PATH;
  struct Broken {
    const char* what;
    std::string script;
    const char* said;  // in the failed node's detail
  };
  const std::vector<Broken> cases = {
      {"exits at start",
       "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --version|--check-data-dir|--data-format) exec " + next +
           " \"$@\";; esac; done\necho 'broken: will not start' >&2\nexit 3\n",
       "did not come up (it exited before serving)"},
      {"fails its data-dir check",
       "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --check-data-dir) echo 'no such format'; exit 1;; esac; done\n"
       "exec " + next + " \"$@\"\n",
       "it cannot run on the data dir: no such format"},
  };
  for (const Broken& b : cases) {
    SCOPED_TRACE(b.what);
    const std::string path = c.root() + "/broken-" + std::to_string(&b - cases.data());
    AgentCluster::WriteExecutable(path, b.script);
    const uint64_t id = a.AgentUpgrade(1, path);
    nlohmann::json end = a.AwaitRollout(1, id, {"failed", "reverted"});
    ASSERT_FALSE(end.is_null()) << a.Rollout(1).dump();
    // One node tried it; it runs the old release again, and so does everyone.
    int tried = -1;
    for (const auto& n : end["nodes"])
      if (n["phase"] == "failed" || n["phase"] == "reverted") {
        EXPECT_EQ(tried, -1) << "a second node was touched: " << end.dump();
        tried = std::stoi(n["name"].get<std::string>().substr(1));
      }
    EXPECT_NE(end.value("reason", "").find(b.said), std::string::npos) << end.dump();
    ASSERT_GE(tried, 0) << end.dump();
    ASSERT_TRUE(EveryoneRuns(a, old_release));
    EXPECT_EQ(a.Services(), services) << "a service was restarted";
    const std::vector<int64_t> now = a.DaemonPids();
    for (int i : c.All()) {
      if (i == tried && now[i] != daemons[i]) {
        a.Extra(static_cast<pid_t>(now[i]));  // started again by the sentinel: not ours to reap
        continue;
      }
      EXPECT_EQ(now[i], daemons[i]) << "n" << i << " restarted";
    }
    EXPECT_EQ(ReleaseOf(c.node(tried).binary), old_release) << "its binary is the old one again";
  }
}

TEST(AgentUpgrade, AKilledCoordinatorIsReplacedAndTheUpgradeGoesOnWithoutRedoingFinishedNodes) {
  const std::string next_release = ReleaseOf(STARLINGD_NEXT_PATH);
  AgentCluster a(STARLINGD_PATH);
  LocalCluster& c = a.c;
  ASSERT_TRUE(RunService(a, "1"));
  const uint64_t id = a.AgentUpgrade(0, STARLINGD_NEXT_PATH);
  ASSERT_TRUE(WaitFor([&] {
    auto r = a.Releases(0);
    return std::count_if(r.begin(), r.end(), [&](const auto& kv) { return kv.second == next_release; }) >= 2;
  }, 90s)) << a.Rollout(0).dump();
  // A holder that just restarted into the new release waits out its
  // quarantine first: there may be no holder for a moment.
  std::optional<nlohmann::json> info;
  ASSERT_TRUE(WaitFor([&] { return (info = c.Info(0)) && (*info)["lease"]["holder"].is_string(); }, 30s));
  const int holder = std::stoi((*info)["lease"]["holder"].get<std::string>().substr(1));
  c.Kill(holder);
  const int watcher = (holder + 1) % kNodes;
  // The next holder takes the rollout on; the killed node is brought to the
  // revision when it is back.
  ASSERT_TRUE(WaitFor([&] {
    auto i = c.Info(watcher);
    return i && (*i)["lease"]["holder"].is_string() && (*i)["lease"]["holder"] != c.node(holder).name;
  }, 60s));
  ASSERT_TRUE(c.Restart(holder, {"--hooks-dir", a.hooks_, "--tag", "roles=web"}));
  ASSERT_FALSE(a.AwaitRollout(watcher, id, {"succeeded"}).is_null()) << a.Rollout(watcher).dump();
  for (int i : c.All()) {
    const std::string log = Slurp(c.node(i).log);
    EXPECT_LE(Count(log, "swapped in starlingd " + next_release), 1u) << "n" << i << " was upgraded twice";
  }
  EXPECT_TRUE(EveryoneRuns(a, next_release));
}

TEST(AgentUpgrade, RefusedForMembersTooOldWithOtherChangesAndWhileFrozen) {
  LocalCluster c;
  ASSERT_EQ(c.Start("new"), 0);
  ASSERT_EQ(c.Start("old", {"--join", c.node(0).addr, "--protocol", "1"}), 1);
  ASSERT_EQ(c.AwaitView(c.All(), c.AllAlive(), kConverge), "");
  const std::string digest = "sha256:" + std::string(64, 'a');
  const std::string agent = "agent: {version: \"0.2.0\", artifact: \"" + digest + "\"}\n";
  // A member speaking protocol 1 cannot take the agent section.
  CommandResult old = c.Cli(0, {"apply", "-f", WriteFile(c, "agent.yaml", agent)});
  EXPECT_NE(old.exit_code, 0);
  EXPECT_NE(old.err.find("needs gossip protocol 2, and old (speaks 1) is too old"), std::string::npos) << old.err;
  // With the old member gone, still not with packages in the same change.
  c.Signal(1, SIGTERM);
  ASSERT_EQ(c.WaitExit(1, 20s), std::optional<int>(0));
  ASSERT_TRUE(WaitFor([&] {
    auto m = c.Members(0);
    return m && Find(*m, "old") && (*Find(*m, "old"))["status"] == "left";
  }, 20s));
  CommandResult both = c.Cli(0, {"apply", "-f", WriteFile(c, "both.yaml",
                                                          agent + "roles: [web]\npackages:\n  web: {version: \"1\"}\n")});
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.err.find("it changes the agent section and roles"), std::string::npos) << both.err;
  CommandResult alone = c.Cli(0, {"apply", "-f", WriteFile(c, "agent2.yaml", agent)});
  EXPECT_EQ(alone.exit_code, 0) << alone.err;
  // Frozen: refused with the reason, before anything is stored.
  ASSERT_EQ(c.Cli(0, {"freeze", "--reason", "migration initialize"}).exit_code, 0);
  CommandResult frozen = c.Cli(0, {"agent", "upgrade", "--binary", STARLINGD_NEXT_PATH});
  EXPECT_NE(frozen.exit_code, 0);
  EXPECT_NE(frozen.err.find("frozen: migration initialize"), std::string::npos) << frozen.err;
  CommandResult held = c.Cli(0, {"artifact", "ls", "--format", "json"});
  EXPECT_EQ(held.out.find("starlingd"), std::string::npos) << held.out;
  // Not a starlingd at all.
  ASSERT_EQ(c.Cli(0, {"unfreeze"}).exit_code, 0);
  CommandResult other = c.Cli(0, {"agent", "upgrade", "--binary", "/bin/true"});
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.err.find("not a starlingd"), std::string::npos) << other.err;
}

}  // namespace
}  // namespace starling::itest
