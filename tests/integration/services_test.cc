// Service parameters given at apply time (`apply --set`) and the service
// graph (`starling graph`), through the real CLI and daemons.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "local_cluster.h"

namespace starling::itest {
namespace {

using json = nlohmann::json;

std::string Write(const LocalCluster& c, const std::string& name, const std::string& text) {
  const std::string path = c.root() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

const char* kSetDoc =
    "services:\n"
    "  web:\n"
    "    params:\n"
    "      port: \"${port}\"\n"
    "      url: \"http://${host}:${port}/\"\n"
    "      threads: 4\n";

TEST(Services, ApplySetFillsParamsAndRefusesMissingOrUnusedValues) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(1, 20s));
  const std::string doc = Write(c, "set.yaml", kSetDoc);

  CommandResult r = c.Cli(0, {"apply", "-f", doc, "--set", "port=8080"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("services.web.params.url: ${host} has no value: give one when applying, with --set host=VALUE"),
            std::string::npos)
      << r.err;

  r = c.Cli(0, {"apply", "-f", doc, "--set", "port=8080", "--set", "host=db.example", "--set", "unused=1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--set unused: no service parameter of the document uses ${unused}"), std::string::npos)
      << r.err;

  r = c.Cli(0, {"apply", "-f", doc, "--set", "port=1", "--set", "port=2", "--set", "host=h"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--set port is given more than once"), std::string::npos) << r.err;

  r = c.Cli(0, {"apply", "-f", doc, "--set", "port"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--set 'port' must be key=value"), std::string::npos) << r.err;

  r = c.Cli(0, {"apply", "-f", doc, "--set", "host=${db.url}", "--set", "port=1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--set host: a value may not contain '${'"), std::string::npos) << r.err;

  // Nothing refused was stored.
  EXPECT_EQ(c.Cli(0, {"history", "--format", "json"}).out.find("set.yaml"), std::string::npos);

  r = c.Cli(0, {"apply", "-f", doc, "--set", "port=8080", "--set", "host=db.example"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = c.Cli(0, {"get", "--format", "json", "--show-params"});
  ASSERT_EQ(r.exit_code, 0);
  json stored = json::parse(r.out);
  EXPECT_EQ(stored["services"]["web"]["params"],
            (json{{"port", "8080"}, {"url", "http://db.example:8080/"}, {"threads", 4}}));

  // Params may be secrets: without --show-params they are hidden (over HTTP
  // always: Monitoring.HttpMirrorsTheCli...); and the hidden copy, applied back, is refused by path.
  r = c.Cli(0, {"get", "--format", "yaml"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.find("db.example"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(hidden: starling get --show-params)"), std::string::npos) << r.out;
  const std::string hidden = c.root() + "/hidden.yaml";
  {
    std::ofstream out(hidden);
    out << r.out;
  }
  r = c.Cli(0, {"apply", "-f", hidden});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("services.web.params.port: is the placeholder"), std::string::npos) << r.err;
}

// Three nodes, two pinned by role to one node each, one on every node.
const char* kGraphDoc =
    "roles: [a, b]\n"
    "nodes:\n"
    "  node0: {lifecycle: commissioned, roles: [a]}\n"
    "  node1: {lifecycle: commissioned, roles: [b]}\n"
    "  node2: {lifecycle: commissioned, roles: [b]}\n"
    "services:\n"
    "  db:\n"
    "    roles: [a]\n"
    "    outputs: [url, port]\n"
    "  cache:\n"
    "    roles: [b]\n"
    "    outputs: [addr]\n"
    "  api:\n"
    "    roles: [b]\n"
    "    params: {DB: \"${db.url}:${db.port}\", CACHE: \"${cache.addr}\"}\n"
    "    after: [db]\n"
    "    outputs: [url]\n"
    "  web:\n"
    "    params: {API: \"${api.url}\"}\n"
    "  batch:\n"
    "    roles: [a]\n"
    "    after: [db, cache]\n";

TEST(Services, GraphDotListsExactlyTheDeclaredEdges) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3, 30s));
  CommandResult r = c.Cli(1, {"apply", "-f", Write(c, "graph.yaml", kGraphDoc)});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  r = c.Cli(2, {"graph"});  // DOT is the default
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string dot = r.out;
  ASSERT_EQ(dot.rfind("digraph starling {", 0), 0u) << dot;

  // Parse it: every edge statement, every node statement, every cluster.
  std::set<std::pair<std::string, std::string>> edges;
  std::map<std::string, std::string> cluster_of;  // service -> node it is drawn in
  std::set<std::string> drawn;
  std::string cluster;
  std::istringstream lines(dot);
  std::string line;
  const std::regex edge(R"re(^\s*"([^"]+)"\s*->\s*"([^"]+)"(\s*\[.*\])?;$)re");
  const std::regex open(R"re(^\s*subgraph\s+"cluster_([^"]+)"\s*\{$)re");
  const std::regex node(R"re(^\s*"([^"]+)"(\s*\[.*\])?;$)re");
  std::smatch m;
  while (std::getline(lines, line)) {
    if (std::regex_match(line, m, edge)) {
      EXPECT_TRUE(edges.emplace(m[1], m[2]).second) << "edge listed twice: " << line;
    } else if (std::regex_match(line, m, open)) {
      cluster = m[1];
    } else if (line == "  }") {
      cluster.clear();
    } else if (std::regex_match(line, m, node)) {
      drawn.insert(m[1]);
      if (!cluster.empty()) cluster_of[m[1]] = cluster;
    }
  }
  const std::set<std::pair<std::string, std::string>> declared = {
      {"api", "cache"}, {"api", "db"}, {"batch", "cache"}, {"batch", "db"}, {"web", "api"}};
  EXPECT_EQ(edges, declared) << dot;
  EXPECT_EQ(drawn, (std::set<std::string>{"api", "batch", "cache", "db", "web"})) << dot;
  // db and batch run on node0 alone (role a); the others on several nodes.
  EXPECT_EQ(cluster_of, (std::map<std::string, std::string>{{"db", "node0"}, {"batch", "node0"}})) << dot;
  EXPECT_NE(dot.find("web\\non node0, node1, node2"), std::string::npos) << dot;
  EXPECT_NE(dot.find("\"api\" -> \"db\" [label=\"DB, after\"]"), std::string::npos) << dot;

  r = c.Cli(0, {"graph", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json g = json::parse(r.out);
  EXPECT_EQ(g["edges"].size(), declared.size());
  for (const auto& s : g["services"]) {
    if (s["name"] == "api") {
      EXPECT_EQ(s["nodes"], (json{"node1", "node2"}));
    }
  }

  r = c.Cli(0, {"graph", "--format", "svg"});
  if (access("/usr/bin/dot", X_OK) == 0) {
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("<svg"), std::string::npos);
    EXPECT_NE(r.out.find("cache"), std::string::npos);
  } else {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("needs Graphviz's `dot`"), std::string::npos) << r.err;
  }

  r = c.Cli(0, {"graph", "--format", "png"});
  EXPECT_NE(r.exit_code, 0);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// When each service started, from the example hooks' events.log of every node.
std::map<std::string, double> StartTimes(const LocalCluster& c) {
  std::map<std::string, double> out;
  for (int i : c.All()) {
    std::istringstream in(ReadAll(c.node(i).dir + "/example-state/events.log"));
    // "<time> <node> <what> <service> <version>"; the version is empty for a service without a package.
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      double at;
      std::string node, what, item;
      if (fields >> at >> node >> what >> item && what == "start" && !out.count(node + "." + item))
        out[node + "." + item] = at;
    }
  }
  return out;
}

std::string CrossDoc(const std::string& extra_service = "") {
  auto svc = [](const std::string& role, const std::string& params) {
    return "    roles: [" + role + "]\n    hooks: {start: api-start, stop: api-stop, health: api-health}\n" +
           "    outputs: [url]\n" + (params.empty() ? "" : "    params: {PEER: \"" + params + "\"}\n");
  };
  return "roles: [i1, i2]\n"
         "nodes:\n  node0: {lifecycle: commissioned, roles: [i1]}\n  node1: {lifecycle: commissioned, roles: [i2]}\n"
         "services:\n"
         "  i1-s1:\n" + svc("i1", "${i2-s2.url}") +
         "  i1-s2:\n" + svc("i1", "") +
         "  i2-s1:\n" + svc("i2", "${i1-s2.url}") +
         "  i2-s2:\n" + svc("i2", "") + extra_service +
         "policy: {batch: \"100%\", node_deadline: 30s, auto_revert: true}\n";
}

TEST(Services, TwoNodesWhoseServicesNeedEachOtherAllStartInInputOrder) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(2, 20s, {"--hooks-dir", STARLING_EXAMPLE_HOOKS}));
  CommandResult r = c.Cli(0, {"apply", "-f", Write(c, "cross.yaml", CrossDoc())});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(c.Cli(1, {"rollout", "start"}).exit_code, 0);
  r = c.Cli(0, {"rollout", "status", "--watch"}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  auto started = StartTimes(c);
  ASSERT_EQ(started.size(), 4u);
  // Each S1 started after the S2 on the other node whose output it takes.
  EXPECT_GT(started.at("node0.i1-s1"), started.at("node1.i2-s2"));
  EXPECT_GT(started.at("node1.i2-s1"), started.at("node0.i1-s2"));
}

TEST(Services, AMissedStartDeadlineRevertsTheRollout) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(2, 20s, {"--hooks-dir", STARLING_EXAMPLE_HOOKS}));
  ASSERT_EQ(c.Cli(0, {"apply", "-f", Write(c, "good.yaml", CrossDoc())}).exit_code, 0);
  ASSERT_EQ(c.Cli(0, {"rollout", "start"}).exit_code, 0);
  ASSERT_EQ(c.Cli(0, {"rollout", "status", "--watch"}, 60s).exit_code, 0);
  // The revision the first rollout made healthy everywhere (the voter keeper may change the state since).
  const json good = json::parse(c.Cli(0, {"rollout", "status", "--format", "json"}).out);
  // A new service on I1 that needs an output the example hook never prints.
  const std::string late =
      "  late:\n    roles: [i1]\n    hooks: {start: api-start, stop: api-stop, health: api-health}\n"
      "    params: {PORT: \"${i2-s2.port}\"}\n    start_deadline: 3s\n";
  std::string doc = CrossDoc(late);
  // i2-s2 must declare the output for the reference to be valid.
  const std::string decl = "  i2-s2:\n    roles: [i2]\n    hooks: {start: api-start, stop: api-stop, health: api-health}\n"
                           "    outputs: [url]\n";
  doc.replace(doc.find(decl), decl.size(),
              "  i2-s2:\n    roles: [i2]\n    hooks: {start: api-start, stop: api-stop, health: api-health}\n"
              "    outputs: [url, port]\n");
  CommandResult r = c.Cli(1, {"apply", "-f", Write(c, "late.yaml", doc)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(c.Cli(1, {"rollout", "start"}).exit_code, 0);
  r = c.Cli(1, {"rollout", "status", "--watch"}, 90s);
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;  // failed or reverted
  json status = json::parse(c.Cli(0, {"rollout", "status", "--format", "json"}).out);
  EXPECT_EQ(status["state"], "reverted") << status.dump(2);
  // Every node runs the last good revision again.
  std::string last;
  EXPECT_TRUE(WaitFor(
      [&] {
        last = c.Cli(0, {"rollout", "status", "--format", "json"}).out;
        json s = json::parse(last, nullptr, false);
        if (!s.is_object()) return false;
        for (const auto& n : s["nodes"])
          if (n.value("applied_revision", "") != good.value("revision", "")) return false;
        return true;
      },
      30s))
      << "want " << good.value("revision", "") << " everywhere: " << last;
  EXPECT_NE(c.LogOf(0, 100000).find("service late not started within its start deadline (3s): waiting for ${i2-s2.port}"),
            std::string::npos);
}

TEST(Services, ApplyShowsADependencyCycleAsAPath) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(1, 20s));
  const char* doc =
      "services:\n"
      "  a: {params: {X: \"${b.out}\"}, outputs: [out]}\n"
      "  b: {after: [c], outputs: [out]}\n"
      "  c: {params: {Y: \"${a.out}\"}}\n";
  CommandResult r = c.Cli(0, {"apply", "-f", Write(c, "cycle.yaml", doc)});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("a -> b -> c -> a"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace starling::itest
