// The desired-state log across real daemons, observed through the CLI as an
// operator would: apply on one node, read on every node, nodes stopped or
// killed while changes are written, concurrent applies, refused documents.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "local_cluster.h"

namespace starling::itest {
namespace {

using nlohmann::json;

constexpr Millis kConverge = 30s;


// A valid document whose web package is at `version`.
std::string Doc(const std::string& version) {
  return "roles: [web, db]\n"
         "packages:\n"
         "  web: {version: \"" + version + "\", roles: [web], hooks: {install: web-install}}\n"
         "  pg: {version: 15.4-1, roles: [db]}\n"
         "services:\n"
         "  db: {package: pg, roles: [db], outputs: [url]}\n"
         "  api: {package: web, roles: [web], params: {DB_URL: \"${db.url}\"}}\n"
         "policy: {batch: 1, auto_revert: true}\n";
}

// The document without `voters`, which the lease writes on its own once the
// member list is stable (see README "Coordinator lease").
std::optional<json> Get(const LocalCluster& c, int i) {
  CommandResult r = c.Cli(i, {"get", "--format", "json", "--show-params"});
  if (r.exit_code != 0) return std::nullopt;
  json doc = json::parse(r.out, nullptr, false);
  if (doc.is_discarded()) return std::nullopt;
  doc.erase("voters");
  return doc;
}

std::string Field(const LocalCluster& c, int i, const char* field) {
  auto info = c.Info(i);
  if (!info || !info->contains(field)) return "";
  const json& v = (*info)[field];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// Every node in `nodes` reports the same digest as node `ref`; returns "" or
// a description of the first mismatch.
std::string DigestMismatch(const LocalCluster& c, const std::vector<int>& nodes, int ref) {
  const std::string want = Field(c, ref, "digest");
  for (int i : nodes) {
    std::string got = Field(c, i, "digest");
    if (got != want) return c.node(i).name + " has digest " + got + ", " + c.node(ref).name + " has " + want;
  }
  return "";
}

std::string AwaitSameDigest(const LocalCluster& c, const std::vector<int>& nodes, int ref, Millis timeout) {
  std::string last;
  WaitFor([&] { return (last = DigestMismatch(c, nodes, ref)).empty(); }, timeout);
  return last;
}

// Same digest can come before every superseded change has arrived: wait
// until every node holds as many entries as `ref`, and at least `n`.
bool AwaitEntries(const LocalCluster& c, const std::vector<int>& nodes, int ref, size_t n) {
  return WaitFor(
      [&] {
        const std::string want = Field(c, ref, "entries");
        if (want.empty() || std::stoul(want) < n) return false;
        for (int i : nodes)
          if (Field(c, i, "entries") != want) return false;
        return true;
      },
      kConverge);
}

json ApplyJson(const LocalCluster& c, int i, const std::string& file, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"apply", "-f", file, "--format", "json"};
  args.insert(args.end(), extra.begin(), extra.end());
  CommandResult r = c.Cli(i, args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out, nullptr, false);
}

// The operator's changes in history (the lease's voter changes left out).
std::optional<json> History(const LocalCluster& c, int i) {
  CommandResult r = c.Cli(i, {"history", "--format", "json"});
  if (r.exit_code != 0) return std::nullopt;
  json h = json::parse(r.out, nullptr, false);
  if (h.is_discarded() || !h.is_array()) return std::nullopt;
  json out = json::array();
  for (auto& row : h)
    if (row.value("note", "").rfind("voters:", 0) != 0) out.push_back(row);
  return out;
}

TEST(State, ApplyOnOneNodeIsReadOnEveryNode) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(5));
  const std::string file = WriteFile(c, "doc.yaml", Doc("1.2.3"));
  CommandResult r = c.Cli(2, {"apply", "-f", file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // "revision <12 hex> (was ...)"
  ASSERT_EQ(r.out.rfind("revision ", 0), 0u) << r.out;
  const std::string revision = r.out.substr(9, 12);
  auto history = History(c, 2);
  ASSERT_TRUE(history);
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ((*history)[0]["revision"], revision) << "apply prints the new revision";

  json want = json::parse(R"({
    "roles": ["web", "db"],
    "packages": {"web": {"version": "1.2.3", "roles": ["web"], "hooks": {"install": "web-install"}},
                 "pg": {"version": "15.4-1", "roles": ["db"]}},
    "services": {"db": {"package": "pg", "roles": ["db"], "outputs": ["url"]},
                 "api": {"package": "web", "roles": ["web"], "params": {"DB_URL": "${db.url}"}}},
    "policy": {"batch": 1, "auto_revert": true}})");
  for (int i : c.All()) {
    std::optional<json> got;
    EXPECT_TRUE(WaitFor([&] { return (got = Get(c, i)) && *got == want; }, kConverge))
        << c.node(i).name << " has " << (got ? got->dump() : "nothing");
  }
  EXPECT_EQ(AwaitSameDigest(c, c.All(), 2, kConverge), "");
  EXPECT_TRUE(AwaitEntries(c, c.All(), 2, 1));
  // YAML output reads back as the same document.
  CommandResult yaml = c.Cli(4, {"get", "--format", "yaml", "--show-params"});
  ASSERT_EQ(yaml.exit_code, 0);
  const std::string again = WriteFile(c, "again.yaml", yaml.out);
  json same = ApplyJson(c, 4, again);
  EXPECT_EQ(same["changed"], false) << same.dump();
}

TEST(State, NodeStoppedDuringAHundredAppliesCatchesUp) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(5));
  c.Kill(4);
  for (int k = 0; k < 100; ++k) {
    const std::string file = WriteFile(c, "v" + std::to_string(k) + ".yaml", Doc("1.0." + std::to_string(k)));
    CommandResult r = c.Cli(k % 4, {"apply", "-f", file});
    ASSERT_EQ(r.exit_code, 0) << "apply " << k << ": " << r.err;
  }
  ASSERT_TRUE(c.Restart(4));
  EXPECT_EQ(AwaitSameDigest(c, c.All(), 0, kConverge), "");
  EXPECT_TRUE(AwaitEntries(c, {4}, 0, 100)) << Field(c, 4, "entries");
  auto doc = Get(c, 4);
  ASSERT_TRUE(doc);
  EXPECT_EQ((*doc)["packages"]["web"]["version"], "1.0.99");
  auto h = History(c, 4);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->size(), 100u);
}

TEST(State, KillDuringWritesKeepsEveryAcknowledgedChange) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3));
  // Changes are written on node 1 until it is killed; those the CLI
  // acknowledged are recorded by (origin, seq).
  std::mutex mu;
  std::set<std::pair<std::string, uint64_t>> acked;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int k = 0; !stop; ++k) {
      const std::string file = WriteFile(c, "w" + std::to_string(k) + ".yaml", Doc("2.0." + std::to_string(k)));
      CommandResult r = c.Cli(1, {"apply", "-f", file, "--format", "json"});
      if (r.exit_code != 0) continue;  // refused or cut off: not acknowledged
      json j = json::parse(r.out, nullptr, false);
      if (j.is_discarded() || !j.value("changed", false)) continue;
      std::lock_guard lock(mu);
      acked.emplace(j["origin"].get<std::string>(), j["seq"].get<uint64_t>());
    }
  });
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu);
    return acked.size() >= 15;
  }, 30s));
  c.Kill(1);
  stop = true;
  writer.join();
  ASSERT_TRUE(c.Restart(1));
  ASSERT_EQ(AwaitSameDigest(c, c.All(), 0, kConverge), "");
  ASSERT_TRUE(AwaitEntries(c, c.All(), 1, acked.size()));
  for (int i : c.All()) {
    auto h = History(c, i);
    ASSERT_TRUE(h);
    std::set<std::pair<std::string, uint64_t>> held;
    for (const auto& row : *h) held.emplace(row["origin"].get<std::string>(), row["seq"].get<uint64_t>());
    for (const auto& a : acked)
      EXPECT_TRUE(held.count(a)) << c.node(i).name << " lost acknowledged change " << a.first << "#" << a.second;
  }
  std::printf("%zu acknowledged changes, all present on every node after kill -9 and restart\n", acked.size());
}

TEST(State, ConcurrentAppliesPickOneWinnerAndMarkTheConflict) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(5));
  json first = ApplyJson(c, 0, WriteFile(c, "base.yaml", Doc("1.0.0")));
  const std::string base = first["revision"];
  ASSERT_EQ(AwaitSameDigest(c, c.All(), 0, kConverge), "");
  const std::string a = WriteFile(c, "a.yaml", Doc("1.1.0"));
  const std::string b = WriteFile(c, "b.yaml", Doc("1.2.0"));
  // Both edited `base` and neither has seen the other.
  CommandResult ra, rb;
  std::thread ta([&] { ra = c.Cli(1, {"apply", "-f", a, "--base", base}); });
  std::thread tb([&] { rb = c.Cli(3, {"apply", "-f", b, "--base", base}); });
  ta.join();
  tb.join();
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  ASSERT_EQ(AwaitSameDigest(c, c.All(), 0, kConverge), "");
  ASSERT_TRUE(AwaitEntries(c, c.All(), 0, 3));
  std::optional<std::string> winner;
  for (int i : c.All()) {
    auto doc = Get(c, i);
    ASSERT_TRUE(doc);
    std::string v = (*doc)["packages"]["web"]["version"];
    EXPECT_TRUE(v == "1.1.0" || v == "1.2.0") << v;
    if (!winner) winner = v;
    EXPECT_EQ(v, *winner) << "every node must end with the same winner";
    auto h = History(c, i);
    ASSERT_TRUE(h);
    ASSERT_EQ(h->size(), 3u);
    int marked = 0;
    for (const auto& row : *h) {
      std::string conflict = row["conflict"];
      if (conflict.empty()) continue;
      ++marked;
      EXPECT_NE(conflict.find("concurrent change"), std::string::npos) << conflict;
      EXPECT_NE(conflict.find("packages/web"), std::string::npos) << conflict;
    }
    EXPECT_EQ(marked, 1) << c.node(i).name << ": " << h->dump();
  }
  // A third apply from the stale base is told it raced.
  CommandResult late = c.Cli(2, {"apply", "-f", WriteFile(c, "c.yaml", Doc("1.3.0")), "--base", base});
  ASSERT_EQ(late.exit_code, 0) << late.err;
  EXPECT_NE(late.err.find("raced a concurrent change"), std::string::npos) << late.err;
}

struct Refusal {
  const char* name;
  std::string document;
  std::vector<std::string> messages;  // each must appear in stderr
};

TEST(State, InvalidDocumentsAreRefusedNamingTheProblem) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  json ok = ApplyJson(c, 0, WriteFile(c, "ok.yaml", Doc("1.0.0")));
  const auto before = Get(c, 0);
  const std::vector<Refusal> cases = {
      {"cycle",
       "services:\n  a: {package: web, after: [b]}\n  b: {package: web, params: {X: \"${a.url}\"}}\n"
       "  c: {package: web}\n",
       {"services: dependency cycle: a -> b -> a"}},
      {"dangling",
       "services:\n  api: {package: web, params: {DB: \"${nosuch.url}\"}}\n",
       {"services.api.params.DB: ${nosuch.url} refers to unknown service 'nosuch'"}},
      {"output",
       "services:\n  db: {package: pg}\n  api: {package: web, params: {DB: \"${db.port}\"}}\n",
       {"services.api.params.DB:", "port"}},
      {"role",
       "roles: [web, db]\npackages:\n  web: {version: \"1\", roles: [frontend]}\n  pg: {version: \"1\"}\n",
       {"packages.web.roles: unknown role 'frontend' (declared roles: db, web)"}},
      {"hook",
       "packages:\n  web: {version: \"1\", hooks: {instal: x}}\n  pg: {version: \"1\"}\n",
       {"packages.web.hooks: unknown hook 'instal' (expected install, verify or remove)"}},
      {"version",
       "packages:\n  web: {version: \"1..2\"}\n  pg: {version: \"1\"}\n",
       {"packages.web.version: malformed version '1..2'"}},
      {"digest",
       "packages:\n  web: {version: \"1\", artifact: \"sha256:xyz\"}\n  pg: {version: \"1\"}\n",
       {"packages.web.artifact:", "digest"}},
      {"syntax", "packages: [\n", {"line "}},
  };
  for (const auto& k : cases) {
    const std::string file = WriteFile(c, std::string(k.name) + ".yaml", k.document);
    CommandResult r = c.Cli(0, {"apply", "-f", file});
    EXPECT_EQ(r.exit_code, 1) << k.name << ": " << r.out;
    EXPECT_NE(r.err.find(file), std::string::npos) << k.name << ": the message names the file: " << r.err;
    for (const auto& m : k.messages) EXPECT_NE(r.err.find(m), std::string::npos) << k.name << ": " << r.err;
  }
  EXPECT_EQ(Get(c, 0), before) << "refused documents change nothing";
  auto h = History(c, 0);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->size(), 1u);
  CommandResult missing = c.Cli(0, {"apply", "-f", c.root() + "/nosuch.yaml"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("nosuch.yaml"), std::string::npos) << missing.err;
}

TEST(State, HistoryDiffAndRollback) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  json r1 = ApplyJson(c, 0, WriteFile(c, "1.yaml", Doc("1.0.0")));
  json r2 = ApplyJson(c, 0, WriteFile(c, "2.yaml", Doc("2.0.0")));
  const std::string rev1 = r1["revision"], rev2 = r2["revision"];
  ASSERT_NE(rev1, rev2);

  CommandResult diff = c.Cli(0, {"diff", rev1, rev2, "--format", "json"});
  ASSERT_EQ(diff.exit_code, 0) << diff.err;
  json changes = json::parse(diff.out);
  ASSERT_EQ(changes.size(), 1u) << changes.dump();
  EXPECT_EQ(changes[0]["path"], "packages.web.version");
  EXPECT_EQ(changes[0]["kind"], "changed");
  EXPECT_EQ(changes[0]["before"], "1.0.0");
  EXPECT_EQ(changes[0]["after"], "2.0.0");
  CommandResult text = c.Cli(0, {"diff", rev1.substr(0, 6), rev2});
  EXPECT_NE(text.out.find("~ packages.web.version: 1.0.0 -> 2.0.0"), std::string::npos) << text.out;

  CommandResult old = c.Cli(0, {"get", "--revision", rev1, "--format", "json", "--show-params"});
  ASSERT_EQ(old.exit_code, 0) << old.err;
  EXPECT_EQ(json::parse(old.out)["packages"]["web"]["version"], "1.0.0");

  CommandResult rb = c.Cli(0, {"rollback", "--format", "json"});
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  json rolled = json::parse(rb.out);
  EXPECT_EQ(rolled["to"], rev1);
  EXPECT_NE(rolled["revision"], rev1) << "a rollback is a new revision";
  auto now = Get(c, 0);
  ASSERT_TRUE(now);
  json old_doc = json::parse(old.out);
  old_doc.erase("voters");
  EXPECT_EQ(*now, old_doc) << "with the content of the target";
  auto h = History(c, 0);
  ASSERT_TRUE(h);
  ASSERT_EQ(h->size(), 3u);
  EXPECT_EQ(h->back()["note"], "rollback to " + rev1);

  CommandResult bad = c.Cli(0, {"get", "--revision", "ffffffff"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("no revision 'ffffffff'"), std::string::npos) << bad.err;
}

// The usual copy of a document says `freeze: false`: applying it, or
// rolling back to a revision from before the freeze, keeps the freeze and
// says so. Only unfreeze lifts it.
TEST(State, OnlyUnfreezeLiftsAFreeze) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  const std::string file = WriteFile(c, "with-freeze.yaml", Doc("1.0.0") + "freeze: false\n");
  json first = ApplyJson(c, 0, file);
  const std::string before = first.value("revision", "");
  ASSERT_EQ(c.Cli(0, {"freeze", "--reason", "release week"}).exit_code, 0);
  auto frozen = [&] {
    auto doc = Get(c, 0);
    return doc && (*doc)["freeze"].is_object() && (*doc)["freeze"].value("reason", "") == "release week";
  };
  ASSERT_TRUE(frozen());

  CommandResult apply = c.Cli(0, {"apply", "-f", WriteFile(c, "v2.yaml", Doc("2.0.0") + "freeze: false\n")});
  EXPECT_EQ(apply.exit_code, 0) << apply.err;
  EXPECT_NE((apply.out + apply.err).find("stays frozen: release week"), std::string::npos) << apply.out << apply.err;
  EXPECT_TRUE(frozen()) << "a plain apply lifted the freeze";
  EXPECT_EQ((*Get(c, 0))["packages"]["web"]["version"], "2.0.0") << "the rest of the apply is taken";

  CommandResult rb = c.Cli(0, {"rollback", "--to", before});
  EXPECT_EQ(rb.exit_code, 0) << rb.err;
  EXPECT_NE((rb.out + rb.err).find("stays frozen"), std::string::npos) << rb.out << rb.err;
  EXPECT_TRUE(frozen()) << "a rollback lifted the freeze";
  EXPECT_NE(c.Cli(0, {"rollout", "start"}).err.find("release week"), std::string::npos);

  ASSERT_EQ(c.Cli(0, {"unfreeze"}).exit_code, 0);
  EXPECT_FALSE(frozen());
}

// A typo in a node name must not make a phantom node or a voter that can
// never vote: refused, naming the name, unless --force.
TEST(State, NamesThatAreNoMemberAreRefusedUnlessForced) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(2));
  CommandResult typo = c.Cli(0, {"decommission", "nosuchnode"});
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_NE(typo.err.find("nosuchnode is no member"), std::string::npos) << typo.err;
  EXPECT_NE(typo.err.find("--force"), std::string::npos) << typo.err;
  EXPECT_EQ(c.Cli(0, {"nodes", "--format", "json"}).out.find("nosuchnode"), std::string::npos);

  CommandResult voters = c.Cli(1, {"voters", "--force-set", "node0,nodeX"});
  EXPECT_EQ(voters.exit_code, 1);
  EXPECT_NE(voters.err.find("nodeX"), std::string::npos) << voters.err;
  EXPECT_EQ(voters.err.find("node0 "), std::string::npos) << "only the unknown name is named: " << voters.err;

  CommandResult doc = c.Cli(0, {"apply", "-f", WriteFile(c, "voters.yaml", "voters: [node0, nodeY]\n")});
  EXPECT_EQ(doc.exit_code, 1);
  EXPECT_NE(doc.err.find("nodeY"), std::string::npos) << doc.err;

  // A node that has not joined yet, on purpose.
  CommandResult forced = c.Cli(0, {"commission", "node9", "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(c.Cli(0, {"nodes", "--format", "json"}).out.find("node9"), std::string::npos);
  // Known names pass without it.
  EXPECT_EQ(c.Cli(0, {"commission", "node1"}).exit_code, 0);
}

TEST(State, NodesListsLifecycleStatusAndReports) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3));
  json ok = ApplyJson(c, 0, WriteFile(c, "nodes.yaml", "nodes:\n  node1: {lifecycle: commissioned}\n  ghost: {lifecycle: decommissioned}\n"));
  ASSERT_EQ(ok["changed"], true) << ok.dump();
  json rows;
  auto ready = [&] {
    CommandResult r = c.Cli(2, {"nodes", "--format", "json"});
    if (r.exit_code != 0) return false;
    rows = json::parse(r.out, nullptr, false);
    if (!rows.is_array() || rows.size() != 4) return false;
    for (const auto& row : rows)
      if (row["name"] != "ghost" && row["healthy"] != true) return false;
    return true;
  };
  ASSERT_TRUE(WaitFor(ready, kConverge)) << rows.dump();
  std::map<std::string, json> by;
  for (const auto& row : rows) by[row["name"]] = row;
  EXPECT_EQ(by["node1"]["lifecycle"], "commissioned");
  EXPECT_EQ(by["node0"]["lifecycle"], "discovered");
  EXPECT_EQ(by["node0"]["status"], "alive");
  EXPECT_EQ(by["ghost"]["lifecycle"], "decommissioned");
  EXPECT_EQ(by["ghost"]["status"], "unknown");
  EXPECT_TRUE(by["ghost"]["healthy"].is_null());
  for (const char* field : {"name", "lifecycle", "status", "applied_revision", "healthy"})
    EXPECT_TRUE(by["node2"].contains(field)) << field;
}

TEST(State, FreezeRefusesLifecycleChangesAndDecommissionLeavesTheVoters) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3));
  auto voters = [&] {
    CommandResult r = c.Cli(0, {"lease", "--format", "json"});
    json j = json::parse(r.out, nullptr, false);
    return j.is_object() ? j["voters"] : json();
  };
  ASSERT_TRUE(WaitFor([&] { return voters().size() == 3; }, kConverge)) << voters().dump();

  CommandResult com = c.Cli(0, {"commission", "node0", "node1"});
  ASSERT_EQ(com.exit_code, 0) << com.err;
  CommandResult fr = c.Cli(1, {"freeze", "--reason", "release week"});
  ASSERT_EQ(fr.exit_code, 0) << fr.err;
  // The freeze reaches node 2, which then refuses with the reason.
  CommandResult refused;
  ASSERT_TRUE(WaitFor(
      [&] {
        refused = c.Cli(2, {"decommission", "node2"});
        return refused.exit_code == 1;
      },
      kConverge))
      << refused.out;
  EXPECT_NE(refused.err.find("release week"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("node1"), std::string::npos) << "names who froze it: " << refused.err;
  EXPECT_NE(c.Cli(2, {"commission", "node2"}).err.find("frozen"), std::string::npos);

  ASSERT_EQ(c.Cli(2, {"unfreeze"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return c.Cli(2, {"decommission", "node2"}).exit_code == 0; }, kConverge));
  CommandResult two = c.Cli(0, {"decommission", "node0", "node1"});
  EXPECT_EQ(two.exit_code, 1);
  EXPECT_NE(two.err.find("one voter at a time"), std::string::npos) << two.err;

  ASSERT_TRUE(WaitFor([&] { return voters() == json({"node0", "node1"}); }, kConverge)) << voters().dump();
  CommandResult nodes = c.Cli(0, {"nodes", "--format", "json"});
  std::map<std::string, std::string> lifecycle;
  for (const auto& row : json::parse(nodes.out)) lifecycle[row["name"]] = row["lifecycle"];
  EXPECT_EQ(lifecycle["node0"], "commissioned");
  EXPECT_EQ(lifecycle["node1"], "commissioned");
  EXPECT_EQ(lifecycle["node2"], "decommissioned");
}

TEST(State, AutoCommissionSwitchCommissionsDiscoveredNodes) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3));
  auto lifecycles = [&] {
    std::map<std::string, std::string> out;
    CommandResult r = c.Cli(1, {"nodes", "--format", "json"});
    json rows = json::parse(r.out, nullptr, false);
    if (rows.is_array())
      for (const auto& row : rows) out[row["name"]] = row["lifecycle"];
    return out;
  };
  EXPECT_EQ(lifecycles()["node2"], "discovered");
  ApplyJson(c, 0, WriteFile(c, "sw.yaml", "switches: {auto_commission: true, auto_upgrade: false}\n"));
  std::map<std::string, std::string> got;
  EXPECT_TRUE(WaitFor(
      [&] {
        got = lifecycles();
        return got.size() == 3 && got["node0"] == "commissioned" && got["node1"] == "commissioned" &&
               got["node2"] == "commissioned";
      },
      kConverge));
  // A node joining later is commissioned too.
  const int late = c.Launch("node3", {"--join", c.node(0).addr});
  ASSERT_TRUE(c.WaitReady(late));
  EXPECT_TRUE(WaitFor([&] { return lifecycles()["node3"] == "commissioned"; }, kConverge));
}


}  // namespace
}  // namespace starling::itest
