// Rollouts on five real daemons whose hooks are the example scripts in
// examples/hooks: they "install" a package by writing its version to a file
// in the node's data dir and append every start, stop and first passing
// health check, with a timestamp, to example-state/events.log. The checks
// read those files, so they see what the hooks did, not what the daemons say.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "local_cluster.h"

namespace starling::itest {
namespace {

using json = nlohmann::json;

constexpr int kNodes = 5;

std::vector<std::string> HookArgs() { return {"--hooks-dir", STARLING_EXAMPLE_HOOKS, "--tag", "roles=web"}; }

std::string Doc(const std::string& version, const std::string& min_healthy = "1s") {
  return "roles: [web]\n"
         "packages:\n"
         "  web:\n"
         "    version: \"" + version + "\"\n"
         "    roles: [web]\n"
         "    hooks: {install: web-install, verify: web-verify, remove: web-remove}\n"
         "services:\n"
         "  api:\n"
         "    package: web\n"
         "    roles: [web]\n"
         "    hooks: {start: api-start, stop: api-stop, health: api-health}\n"
         "    outputs: [url]\n"
         "policy: {batch: 1, min_healthy: " + min_healthy +
         ", node_deadline: 8s, failure_threshold: 0, auto_revert: true}\n"
         "switches: {auto_commission: true}\n";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

struct Event {
  double at = 0;
  std::string node, what, item, version;
};

// Every node's events.log, in time order.
std::vector<Event> Events(const LocalCluster& c) {
  std::vector<Event> out;
  for (int i : c.All()) {
    std::istringstream in(ReadFile(c.node(i).dir + "/example-state/events.log"));
    Event e;
    while (in >> e.at >> e.node >> e.what >> e.item >> e.version) out.push_back(e);
  }
  std::sort(out.begin(), out.end(), [](const Event& a, const Event& b) { return a.at < b.at; });
  return out;
}

// The most nodes that were ever between a stop of the service and its next
// passing health check at the same moment.
int MostUnavailable(const std::vector<Event>& events) {
  std::set<std::string> down;
  size_t most = 0;
  for (const Event& e : events) {
    if (e.what == "stop") down.insert(e.node);
    if (e.what == "healthy") down.erase(e.node);
    most = std::max(most, down.size());
  }
  return static_cast<int>(most);
}

int Count(const std::vector<Event>& events, const std::string& node, const std::string& what,
          const std::string& version) {
  return static_cast<int>(std::count_if(events.begin(), events.end(), [&](const Event& e) {
    return e.node == node && e.what == what && e.version == version;
  }));
}

std::optional<json> CliJson(const LocalCluster& c, int i, std::vector<std::string> args) {
  args.insert(args.end(), {"--format", "json"});
  CommandResult r = c.Cli(i, args, 5s);
  if (r.exit_code != 0) return std::nullopt;
  json j = json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

std::string Apply(LocalCluster& c, int i, const std::string& text) {
  std::string path = c.root() + "/doc-" + std::to_string(std::hash<std::string>()(text)) + ".yaml";
  std::ofstream(path) << text;
  auto r = CliJson(c, i, {"apply", "-f", path});
  EXPECT_TRUE(r) << "apply failed on node " << i;
  return r ? r->value("revision", "") : "";
}

// Waits for every listed node to be commissioned (auto-commission), then
// starts a rollout of the current revision on node i; its id.
uint64_t StartRollout(LocalCluster& c, int i, size_t commissioned = kNodes) {
  bool ready = WaitFor(
      [&] {
        auto nodes = CliJson(c, i, {"nodes"});
        if (!nodes) return false;
        size_t n = 0;
        for (const auto& row : *nodes) n += row.value("lifecycle", "") == "commissioned";
        return n >= commissioned;
      },
      40s);
  EXPECT_TRUE(ready) << "the nodes were not commissioned";
  CommandResult r = c.Cli(i, {"rollout", "start", "--format", "json"}, 5s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out, nullptr, false);
  return j.is_object() ? j.value("id", uint64_t{0}) : 0;
}

// Waits until rollout `id` has settled, as node i sees it; its status.
json AwaitSettled(LocalCluster& c, int i, uint64_t id, Millis timeout = 90s) {
  json last;
  WaitFor(
      [&] {
        auto s = CliJson(c, i, {"rollout", "status"});
        if (!s) return false;
        last = *s;
        std::string state = s->value("state", "");
        return s->value("id", uint64_t{0}) == id && !s->contains("requested") &&
               (state == "succeeded" || state == "incomplete" || state == "failed" || state == "reverted");
      },
      timeout, 300ms);
  return last;
}

// Every node in `nodes` reports `revision` applied, as node `observer` sees it.
bool AllApplied(LocalCluster& c, int observer, const std::vector<std::string>& nodes, const std::string& revision) {
  return WaitFor(
      [&] {
        auto s = CliJson(c, observer, {"nodes"});
        if (!s) return false;
        for (const auto& name : nodes) {
          bool ok = false;
          for (const auto& row : *s)
            if (row.value("name", "") == name && row["applied_revision"] == revision) ok = true;
          if (!ok) return false;
        }
        return true;
      },
      30s);
}

std::vector<std::string> Names(const LocalCluster& c, std::vector<int> idx) {
  std::vector<std::string> out;
  for (int i : idx) out.push_back(c.node(i).name);
  return out;
}

std::string Installed(const LocalCluster& c, int i) {
  return Trimmed(ReadFile(c.node(i).dir + "/example-state/package-web"));
}
std::string Running(const LocalCluster& c, int i) {
  return Trimmed(ReadFile(c.node(i).dir + "/example-state/service-api"));
}

// Five nodes with version 1.0 rolled out everywhere.
// An apply that turns on auto_commission commissions the members in the
// same change: the revision it prints is the one `rollout start` rolls out,
// not one the lease writes a moment later.
TEST(RolloutRevision, TheRevisionAnApplyPrintsIsTheOneARolloutStarts) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3, 30s, HookArgs()));
  // The lease's first change, its voters, comes within seconds of the start.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto doc = CliJson(c, 0, {"get"});
        return doc && (*doc)["voters"].is_array() && (*doc)["voters"].size() == 3;
      },
      30s));
  std::string path = c.root() + "/first.yaml";
  std::ofstream(path) << Doc("1.0");
  auto applied = CliJson(c, 1, {"apply", "-f", path});
  ASSERT_TRUE(applied);
  const std::string revision = applied->value("revision", "");
  EXPECT_EQ((*applied)["commissioned"], json({"node0", "node1", "node2"})) << applied->dump();
  const uint64_t id = StartRollout(c, 1, 3);
  json s = AwaitSettled(c, 1, id);
  EXPECT_EQ(s.value("state", ""), "succeeded") << s.dump(2);
  EXPECT_EQ(s.value("revision", ""), revision) << "apply printed one revision, the rollout used another";
}

class Rollout : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(c.StartConverged(kNodes, 30s, HookArgs()));
    Apply(c, 0, Doc("1.0"));
    uint64_t id = StartRollout(c, 0);
    json s = AwaitSettled(c, 0, id);
    ASSERT_EQ(s.value("state", ""), "succeeded") << s.dump(2);
    // The lease's own changes (voters, commissioning) may have moved the
    // revision on since the apply: the rollout says which one it rolled out.
    v1 = s.value("revision", "");
    ASSERT_TRUE(AllApplied(c, 0, Names(c, c.All()), v1));
    for (int i : c.All()) ASSERT_EQ(Installed(c, i), "1.0") << c.node(i).name;
  }
  LocalCluster c;
  std::string v1;
};

TEST_F(Rollout, BatchOfOneKeepsOneNodeBetweenStopAndHealthy) {
  std::string v2 = Apply(c, 3, Doc("2.0"));
  uint64_t id = StartRollout(c, 3);
  json s = AwaitSettled(c, 1, id);
  ASSERT_EQ(s.value("state", ""), "succeeded") << s.dump(2);
  EXPECT_EQ(s.value("revision", ""), v2);
  EXPECT_NE(v2, v1);
  ASSERT_EQ(s["nodes"].size(), static_cast<size_t>(kNodes));
  for (const auto& n : s["nodes"]) EXPECT_EQ(n.value("phase", ""), "done") << n.dump();
  EXPECT_TRUE(AllApplied(c, 2, Names(c, c.All()), v2));

  std::vector<Event> events = Events(c);
  EXPECT_EQ(MostUnavailable(events), 1);
  for (int i : c.All()) {
    const std::string& name = c.node(i).name;
    EXPECT_EQ(Installed(c, i), "2.0") << name;
    EXPECT_EQ(Running(c, i), "2.0") << name;
    EXPECT_EQ(Count(events, name, "install", "2.0"), 1) << name;
    EXPECT_EQ(Count(events, name, "stop", "1.0"), 1) << name;
  }
}

TEST_F(Rollout, FailingHealthCheckStopsTheRolloutAndRevertsTouchedNodes) {
  // Version 2.0 never gets healthy on node2 (the third node in name order).
  std::ofstream(c.node(2).dir + "/example-state/unhealthy") << "2.0\n";
  std::string v2 = Apply(c, 0, Doc("2.0"));
  uint64_t id = StartRollout(c, 0);
  json s = AwaitSettled(c, 0, id, 120s);
  ASSERT_EQ(s.value("state", ""), "reverted") << s.dump(2);
  EXPECT_EQ(s.value("revision", ""), v2);
  EXPECT_EQ(s.value("from", ""), v1);
  // The node's own word on what failed, and how to make the document match.
  EXPECT_NE(s.value("reason", "").find("node2 (not healthy yet: "), std::string::npos) << s.dump(2);
  EXPECT_NE(s.value("reason", "").find("`starling rollback --to " + v1 + "`"), std::string::npos) << s.dump(2);
  EXPECT_TRUE(AllApplied(c, 4, Names(c, c.All()), v1));

  std::vector<Event> events = Events(c);
  EXPECT_EQ(MostUnavailable(events), 1);
  for (int i : c.All()) {
    EXPECT_EQ(Installed(c, i), "1.0") << c.node(i).name;
    EXPECT_EQ(Running(c, i), "1.0") << c.node(i).name;
  }
  // Nodes 0 to 2 were touched and came back; the rollout stopped before 3 and 4.
  for (int i : {0, 1, 2}) EXPECT_EQ(Count(events, c.node(i).name, "install", "2.0"), 1) << c.node(i).name;
  for (int i : {3, 4}) EXPECT_EQ(Count(events, c.node(i).name, "install", "2.0"), 0) << c.node(i).name;
  for (int i : {0, 1, 2}) EXPECT_EQ(Count(events, c.node(i).name, "start", "1.0"), 2) << c.node(i).name;
}

TEST_F(Rollout, CoordinatorKilledMidRolloutAnotherResumesWithoutRedoingNodes) {
  // Slow batches, so that the kill lands mid-rollout.
  std::string v2 = Apply(c, 0, Doc("2.0", "3s"));
  uint64_t id = StartRollout(c, 0);
  std::string holder;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = CliJson(c, 0, {"rollout", "status"});
        auto l = CliJson(c, 0, {"lease"});
        if (!s || !l || !(*l)["holder"].is_string()) return false;
        holder = (*l)["holder"].get<std::string>();
        // Neither while the holder is in the batch nor when it is next: a
        // batch node down past its deadline fails the rollout (another
        // test's matter). Batches take over 3 s, so the one after the next
        // cannot start before the kill lands.
        const json& batch = (*s)["batch"];
        if ((*s).value("id", uint64_t{0}) != id || (*s)["counts"].value("done", 0) < 2 || batch.size() != 1)
          return false;
        std::vector<std::string> order;
        for (const auto& n : (*s)["nodes"]) order.push_back(n.value("name", ""));
        auto at = std::find(order.begin(), order.end(), batch[0].get<std::string>());
        return at != order.end() && *at != holder && (at + 1 == order.end() || *(at + 1) != holder);
      },
      60s));
  int killed = -1;
  for (int i : c.All())
    if (c.node(i).name == holder) killed = i;
  ASSERT_GE(killed, 0) << holder;
  c.Kill(killed);
  int observer = killed == 0 ? 1 : 0;
  json s = AwaitSettled(c, observer, id, 120s);
  // The killed node is down: if its turn had not come, it is off the
  // revision and the rollout says so.
  if (s.value("state", "") == "incomplete") {
    EXPECT_NE(s.value("reason", "").find(holder + " (down)"), std::string::npos) << s.dump(2);
  } else {
    ASSERT_EQ(s.value("state", ""), "succeeded") << s.dump(2);
  }
  std::vector<int> rest = c.AllExcept(killed);
  EXPECT_TRUE(AllApplied(c, observer, Names(c, rest), v2));
  std::vector<Event> events = Events(c);
  for (int i : rest) {
    EXPECT_EQ(Count(events, c.node(i).name, "install", "2.0"), 1) << c.node(i).name << " was upgraded twice";
    EXPECT_EQ(Count(events, c.node(i).name, "stop", "1.0"), 1) << c.node(i).name;
    EXPECT_EQ(Installed(c, i), "2.0") << c.node(i).name;
  }

  // The old coordinator was down for the rest of the rollout: back, it is
  // brought to the new revision.
  ASSERT_TRUE(c.Restart(killed, HookArgs()));
  EXPECT_TRUE(AllApplied(c, observer, {holder}, v2));
  EXPECT_TRUE(WaitFor([&] { return Installed(c, killed) == "2.0" && Running(c, killed) == "2.0"; }, 30s));
}

TEST_F(Rollout, NodeDownDuringTheRolloutAppliesTheRevisionWhenBack) {
  c.Kill(4);
  // Down as far as the cluster knows: otherwise node4 is only suspect (under
  // load, for longer) and the rollout rightly treats it as maybe there.
  ASSERT_EQ(c.AwaitView({0, 1, 2, 3}, {{"node0", "alive"}, {"node1", "alive"}, {"node2", "alive"}, {"node3", "alive"},
                                      {"node4", "failed"}},
                        30s),
            "");
  std::string v2 = Apply(c, 0, Doc("2.0"));
  uint64_t id = StartRollout(c, 0);
  json s = AwaitSettled(c, 0, id);
  // It ran through, but node4 is not on the revision: not a success.
  ASSERT_EQ(s.value("state", ""), "incomplete") << s.dump(2);
  EXPECT_NE(s.value("reason", "").find("node4 (down)"), std::string::npos) << s.dump(2);
  for (const auto& n : s["nodes"])
    if (n.value("name", "") == "node4") {
      EXPECT_EQ(n.value("phase", ""), "down") << n.dump();
      EXPECT_FALSE(n.value("healthy", true)) << n.dump();
    }
  CommandResult watch = c.Cli(1, {"rollout", "status", "--watch"}, 20s);
  EXPECT_EQ(watch.exit_code, 4) << watch.out << watch.err;
  EXPECT_EQ(Installed(c, 4), "1.0");

  // Back, it is caught up, and then the rollout is a success.
  ASSERT_TRUE(c.Restart(4, HookArgs()));
  EXPECT_TRUE(AllApplied(c, 0, {"node4"}, v2));
  EXPECT_TRUE(WaitFor([&] { return Installed(c, 4) == "2.0" && Running(c, 4) == "2.0"; }, 30s));
  EXPECT_TRUE(WaitFor(
      [&] {
        auto st = CliJson(c, 2, {"rollout", "status"});
        return st && st->value("state", "") == "succeeded";
      },
      30s));
}

// kill -9 of the node of the batch right after its health check passed:
// its last report says healthy, but the coordinator must not count it done
// while membership says it is not alive, so no other node is stopped while
// it is down; past its deadline it fails, and the revert waits for room (the
// failed node may be out of service where the coordinator cannot see it)
// until it is back.
TEST_F(Rollout, ANodeKilledJustAfterItsHealthCheckIsNotCountedHealthy) {
  // Not the coordinator: its failover is another test's matter.
  auto lease = CliJson(c, 0, {"lease"});
  ASSERT_TRUE(lease && (*lease)["holder"].is_string());
  const std::string holder = (*lease)["holder"];
  Apply(c, 0, Doc("2.0", "4s"));
  uint64_t id = StartRollout(c, 0);
  std::string victim;
  double healthy_at = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const Event& e : Events(c))
          if (e.what == "healthy" && e.version == "2.0" && e.node != holder) {
            victim = e.node;
            healthy_at = e.at;
            return true;
          }
        return false;
      },
      40s, 50ms));
  int vi = -1;
  for (int i : c.All())
    if (c.node(i).name == victim) vi = i;
  ASSERT_GE(vi, 0) << victim;
  c.Kill(vi);
  const int watcher = (vi + 1) % kNodes;
  json s;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = CliJson(c, watcher, {"rollout", "status"});
        if (!st) return false;
        s = *st;
        // Reverted at once when the victim was the only node touched; else
        // the revert waits for room (no batch) while it is down.
        return s.value("id", uint64_t{0}) == id && s.value("reverting", false) && s["batch"].empty() &&
               s.value("reason", "").find(victim) != std::string::npos;
      },
      60s, 300ms))
      << s.dump(2);
  for (const auto& n : s["nodes"])
    if (n.value("name", "") == victim) {
      EXPECT_EQ(n.value("phase", ""), "down") << n.dump();
      EXPECT_FALSE(n.value("healthy", true)) << n.dump();
    }
  for (const Event& e : Events(c))
    if (e.at > healthy_at && e.what == "stop" && e.node != victim && e.version == "1.0")
      ADD_FAILURE() << e.node << " stopped " << e.version << " at " << e.at << " while " << victim
                    << " was down (killed after its health check at " << healthy_at << ")";
  ASSERT_TRUE(c.Restart(vi, HookArgs()));
  s = AwaitSettled(c, watcher, id);
  EXPECT_EQ(s.value("state", ""), "reverted") << s.dump(2);
  EXPECT_NE(s.value("reason", "").find(victim), std::string::npos) << s.dump(2);
}

// A start of a revision that is not the current one says what it would
// change and needs --yes; --dry-run shows the plan of any start; nodes whose
// content a revision does not change get no batch.
TEST_F(Rollout, StartOfAnOlderRevisionShowsItsChangesAndNeedsYes) {
  // A freeze and an unfreeze make revisions with nothing for the nodes.
  ASSERT_EQ(c.Cli(0, {"freeze", "--reason", "x"}).exit_code, 0);
  ASSERT_EQ(c.Cli(0, {"unfreeze"}).exit_code, 0);
  auto noop = CliJson(c, 0, {"rollout", "start", "--dry-run"});
  ASSERT_TRUE(noop);
  EXPECT_NE(noop->value("revision", ""), v1);
  EXPECT_TRUE((*noop)["batches"].empty()) << noop->dump();

  const std::string v2 = Apply(c, 0, Doc("2.0"));
  // Written on node0; asked on node1 once it has it.
  std::optional<json> plan;
  ASSERT_TRUE(WaitFor(
      [&] {
        plan = CliJson(c, 1, {"rollout", "start", "--dry-run"});
        return plan && plan->value("revision", "") == v2;
      },
      10s));
  CommandResult old = c.Cli(1, {"rollout", "start", "--revision", v1});
  EXPECT_EQ(old.exit_code, 1);
  EXPECT_NE(old.err.find("is not the current revision"), std::string::npos) << old.err;
  EXPECT_NE(old.err.find("~ packages.web.version: 2.0 -> 1.0"), std::string::npos) << old.err;
  EXPECT_NE(old.err.find("--yes"), std::string::npos) << old.err;

  EXPECT_EQ((*plan)["batches"].size(), static_cast<size_t>(kNodes)) << plan->dump();  // batch: 1
  // Asked on node1, which learns by gossip what every node reports applied.
  std::optional<json> back;
  WaitFor(
      [&] {
        back = CliJson(c, 1, {"rollout", "start", "--dry-run", "--revision", v1});
        return back && (*back)["batches"].empty();
      },
      10s);
  ASSERT_TRUE(back);
  EXPECT_TRUE((*back)["batches"].empty()) << "every node runs it already: " << back->dump();
  EXPECT_EQ((*back)["unchanged"].size(), static_cast<size_t>(kNodes)) << back->dump();
  CommandResult text = c.Cli(1, {"rollout", "start", "--dry-run"});
  EXPECT_NE(text.out.find("batch 1: "), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("nothing started"), std::string::npos) << text.out;
  auto status = CliJson(c, 0, {"rollout", "status"});
  ASSERT_TRUE(status);
  EXPECT_FALSE(status->contains("requested")) << "a dry run asked for a rollout";

  // Going back to what every node runs with --yes: nobody is stopped.
  const size_t stops = Events(c).size();
  CommandResult yes = c.Cli(1, {"rollout", "start", "--revision", v1, "--yes", "--format", "json"});
  ASSERT_EQ(yes.exit_code, 0) << yes.err;
  json s = AwaitSettled(c, 0, json::parse(yes.out).value("id", uint64_t{0}));
  EXPECT_EQ(s.value("state", ""), "succeeded") << s.dump(2);
  EXPECT_EQ(Events(c).size(), stops) << "hooks ran for a revision every node already runs";
}

TEST_F(Rollout, RestartRunsTheVerifyHooksAndRepairsDrift) {
  c.Kill(1);
  // While it was down, someone changed what is installed and the service died.
  std::ofstream(c.node(1).dir + "/example-state/package-web") << "0.9\n";
  std::remove((c.node(1).dir + "/example-state/service-api").c_str());
  ASSERT_TRUE(c.Restart(1, HookArgs()));
  // The hooks write the state file before they log the event: wait for both.
  std::vector<Event> events;
  EXPECT_TRUE(WaitFor(
      [&] {
        events = Events(c);
        return Installed(c, 1) == "1.0" && Running(c, 1) == "1.0" &&
               Count(events, "node1", "healthy", "1.0") == 2;
      },
      20s));
  EXPECT_EQ(Count(events, "node1", "install", "1.0"), 2);
  EXPECT_EQ(Count(events, "node1", "start", "1.0"), 2);
  // Nodes that did not drift are left alone.
  EXPECT_EQ(Count(events, "node2", "install", "1.0"), 1);
  EXPECT_TRUE(WaitFor(
      [&] {
        auto nodes = CliJson(c, 0, {"nodes"});
        if (!nodes) return false;
        for (const auto& row : *nodes)
          if (row.value("name", "") == "node1")
            return row["applied_revision"] == v1 && row["healthy"] == true && row["phase"] == "idle";
        return false;
      },
      20s));
}

TEST_F(Rollout, FreezeRefusesARolloutWithTheReason) {
  ASSERT_EQ(c.Cli(1, {"freeze", "--reason", "change window closed"}).exit_code, 0);
  // Written on node1; asked on node0 once it has the freeze.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto doc = CliJson(c, 0, {"get"});
        return doc && doc->contains("freeze") && (*doc)["freeze"].is_object();
      },
      10s));
  Apply(c, 0, Doc("2.0"));
  CommandResult r = c.Cli(0, {"rollout", "start"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("change window closed"), std::string::npos) << r.err;
  ASSERT_EQ(c.Cli(1, {"unfreeze"}).exit_code, 0);
  uint64_t id = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto j = CliJson(c, 0, {"rollout", "start"});
        if (j) id = j->value("id", uint64_t{0});
        return j.has_value();
      },
      10s));
  EXPECT_EQ(AwaitSettled(c, 0, id).value("state", ""), "succeeded");
}

TEST_F(Rollout, DecommissionRunsTheRemoveHooks) {
  ASSERT_EQ(c.Cli(0, {"decommission", "node3"}).exit_code, 0);
  EXPECT_TRUE(WaitFor(
      [&] {
        std::vector<Event> events = Events(c);
        return Count(events, "node3", "remove", "1.0") == 1 && Count(events, "node3", "stop", "1.0") == 1;
      },
      20s));
  EXPECT_EQ(Installed(c, 3), "");
  EXPECT_EQ(Running(c, 3), "");
  EXPECT_TRUE(WaitFor(
      [&] {
        auto nodes = CliJson(c, 1, {"nodes"});
        if (!nodes) return false;
        for (const auto& row : *nodes)
          if (row.value("name", "") == "node3")
            return row.value("lifecycle", "") == "decommissioned" && row.value("phase", "") == "removed";
        return false;
      },
      20s));
  // A later rollout leaves it alone.
  Apply(c, 0, Doc("2.0"));
  uint64_t id = StartRollout(c, 0, kNodes - 1);
  json s = AwaitSettled(c, 0, id);
  EXPECT_EQ(s.value("state", ""), "succeeded") << s.dump(2);
  for (const auto& n : s["nodes"]) EXPECT_NE(n.value("name", ""), "node3");
  EXPECT_EQ(Installed(c, 3), "");
}

TEST_F(Rollout, PauseHoldsBackTheNextBatchAndResumeFinishes) {
  Apply(c, 0, Doc("2.0", "2s"));
  uint64_t id = StartRollout(c, 0);
  ASSERT_TRUE(WaitFor([&] { return c.Cli(1, {"rollout", "pause"}).exit_code == 0; }, 10s));
  ASSERT_TRUE(WaitFor([&] {
    auto s = CliJson(c, 0, {"rollout", "status"});
    return s && s->value("state", "") == "paused" && (*s)["batch"].empty();
  }, 30s));
  const size_t installs = [&] {
    size_t n = 0;
    for (const Event& e : Events(c)) n += e.what == "install" && e.version == "2.0";
    return n;
  }();
  EXPECT_LT(installs, static_cast<size_t>(kNodes));
  ASSERT_EQ(c.Cli(2, {"rollout", "resume"}).exit_code, 0);
  EXPECT_EQ(AwaitSettled(c, 0, id).value("state", ""), "succeeded");
  size_t after = 0;
  for (const Event& e : Events(c)) after += e.what == "install" && e.version == "2.0";
  EXPECT_EQ(after, static_cast<size_t>(kNodes));
}

}  // namespace
}  // namespace starling::itest
