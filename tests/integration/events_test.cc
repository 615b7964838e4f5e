// Serf's integration features on real daemons: event handlers on membership
// changes (and the HAProxy example keeping a backend file), user events and
// queries with tag filters.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "local_cluster.h"

namespace starling::itest {
namespace {

using nlohmann::json;

// Records every run as one JSON line in <root>/events/<self>.log: the
// STARLING_* environment and stdin.
constexpr const char* kRecorder = R"(#!/usr/bin/python3
import json, os, sys
env = {k: v for k, v in os.environ.items() if k.startswith("STARLING_")}
line = json.dumps({"env": env, "stdin": sys.stdin.read()})
d = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "events")
with open(os.path.join(d, env["STARLING_SELF_NAME"] + ".log"), "a") as f:
    f.write(line + "\n")
if env["STARLING_EVENT"] == "query":
    print("pong from " + env["STARLING_SELF_NAME"])
)";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every recorded run of node `self`.
std::vector<json> Runs(const LocalCluster& c, const std::string& self) {
  std::vector<json> out;
  std::istringstream lines(ReadAll(c.root() + "/events/" + self + ".log"));
  for (std::string line; std::getline(lines, line);) {
    json j = json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

// Whether `self` ran its handler for `event` with `member` on stdin and the right environment.
bool SawMemberEvent(const LocalCluster& c, const std::string& self, const std::string& event,
                    const std::string& member, const std::string& roles) {
  for (const json& r : Runs(c, self)) {
    const json& env = r["env"];
    if (env.value("STARLING_EVENT", "") != event || env.value("STARLING_SELF_NAME", "") != self) continue;
    if (env.value("STARLING_TAG_ROLES", "") != roles || env.value("STARLING_SOCKET", "").empty()) continue;
    std::istringstream in(r.value("stdin", ""));
    for (std::string line; std::getline(in, line);)
      if (line.rfind(member + "\t127.0.0.1:", 0) == 0 && line.find("\troles=") != std::string::npos) return true;
  }
  return false;
}

class Events : public ::testing::Test {
 protected:
  void SetUp() override {
    // The handlers' directory must be trusted like a hooks dir: ours, 0700.
    handlers_ = c_.root() + "/handlers";
    ASSERT_EQ(mkdir(handlers_.c_str(), 0700), 0);
    ASSERT_EQ(mkdir((c_.root() + "/events").c_str(), 0700), 0);
    recorder_ = handlers_ + "/recorder";
    std::ofstream(recorder_) << kRecorder;
    chmod(recorder_.c_str(), 0700);
    haproxy_ = handlers_ + "/haproxy-backends";
    std::filesystem::copy_file(STARLING_EXAMPLES "/handlers/haproxy-backends", haproxy_);
    chmod(haproxy_.c_str(), 0700);
    main_cfg_ = WriteFile(c_, "haproxy.cfg",
                          "global\n    maxconn 100\n"
                          "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n"
                          "    timeout server 30s\n"
                          "frontend www\n    bind 127.0.0.1:18080\n    default_backend web\n");
    backends_ = c_.root() + "/web.cfg";
    std::ofstream(handlers_ + "/haproxy-backends.conf")
        << "role = web\noutput = " << backends_ << "\nstarling = " << STARLING_CLI_PATH << "\ncheck = " << main_cfg_
        << "\nport = 8080\n";
  }

  std::vector<std::string> Args(int i) const {
    std::vector<std::string> args = {"--event-handler", recorder_, "--tag", "roles=" + Roles(i)};
    if (i == 0)
      args.insert(args.end(), {"--event-handler",
                               "member-join,member-leave,member-failed,member-update,member-reap=" + haproxy_});
    return args;
  }
  static std::string Roles(int i) { return i % 2 == 0 ? "web" : "db"; }

  int StartNode(int i) {
    std::vector<std::string> args = Args(i);
    if (i > 0) args.insert(args.end(), {"--join", c_.node(0).addr});
    return c_.Start("node" + std::to_string(i), args);
  }

  // The servers the backend file lists, by name.
  std::set<std::string> Servers() const {
    std::set<std::string> out;
    std::istringstream in(ReadAll(backends_));
    for (std::string line; std::getline(in, line);) {
      std::istringstream words(line);
      std::string w, name;
      if (words >> w >> name && w == "server") out.insert(name);
    }
    return out;
  }

  std::string HaproxyCheck() const {
    CommandResult r = RunCommand({"/usr/sbin/haproxy", "-c", "-f", main_cfg_, "-f", backends_}, 20s);
    return r.exit_code == 0 ? "" : "exit " + std::to_string(r.exit_code) + ": " + r.out + r.err;
  }

  LocalCluster c_;
  std::string handlers_, recorder_, haproxy_, main_cfg_, backends_;
};

TEST_F(Events, HandlersFireOnEveryOtherNodeAndTheHaproxyBackendsFollowTheWebMembers) {
  if (!std::filesystem::exists("/usr/sbin/haproxy")) GTEST_SKIP() << "haproxy is not installed (scripts/install-deps.sh --with-tests)";
  constexpr int kNodes = 10;
  for (int i = 0; i < kNodes; ++i) ASSERT_EQ(StartNode(i), i);
  ASSERT_EQ(c_.AwaitView(c_.All(), c_.AllAlive(), 30s), "");
  auto web_alive = [&](const std::set<int>& gone) {
    std::set<std::string> out;
    for (int i = 0; i < static_cast<int>(c_.size()); ++i)
      if (Roles(i) == "web" && !gone.count(i)) out.insert(c_.node(i).name);
    return out;
  };
  EXPECT_TRUE(WaitFor([&] { return Servers() == web_alive({}); }, 20s)) << ReadAll(backends_);
  EXPECT_EQ(HaproxyCheck(), "");

  // A join: every other node runs member-join with the newcomer on stdin.
  ASSERT_EQ(StartNode(kNodes), kNodes);
  const std::string joined = c_.node(kNodes).name;
  for (int i = 0; i < kNodes; ++i)
    EXPECT_TRUE(WaitFor([&] { return SawMemberEvent(c_, c_.node(i).name, "member-join", joined, Roles(i)); }, 20s))
        << c_.node(i).name << " did not run member-join for " << joined;
  EXPECT_TRUE(WaitFor([&] { return Servers() == web_alive({}); }, 20s)) << ReadAll(backends_);
  EXPECT_EQ(HaproxyCheck(), "");

  // kill -9 of a web node: member-failed everywhere else; it leaves the backends.
  c_.Kill(2);
  const std::string failed = c_.node(2).name;
  for (int i : c_.AllExcept(2))
    EXPECT_TRUE(WaitFor([&] { return SawMemberEvent(c_, c_.node(i).name, "member-failed", failed, Roles(i)); }, 30s))
        << c_.node(i).name << " did not run member-failed for " << failed;
  EXPECT_TRUE(WaitFor([&] { return Servers() == web_alive({2}); }, 20s)) << ReadAll(backends_);
  EXPECT_EQ(HaproxyCheck(), "");

  // A graceful leave: member-leave everywhere else.
  CommandResult leave = c_.Cli(4, {"leave"});
  ASSERT_EQ(leave.exit_code, 0) << leave.err;
  ASSERT_TRUE(c_.WaitExit(4, 20s).has_value());
  const std::string left = c_.node(4).name;
  for (int i : c_.All()) {
    if (i == 2 || i == 4) continue;
    EXPECT_TRUE(WaitFor([&] { return SawMemberEvent(c_, c_.node(i).name, "member-leave", left, Roles(i)); }, 20s))
        << c_.node(i).name << " did not run member-leave for " << left;
  }
  EXPECT_TRUE(WaitFor([&] { return Servers() == web_alive({2, 4}); }, 20s)) << ReadAll(backends_);
  EXPECT_EQ(HaproxyCheck(), "");
}

TEST_F(Events, UserEventsReachEveryHandlerAndQueriesAreAnsweredByExactlyTheMatchingMembers) {
  constexpr int kNodes = 6;
  for (int i = 0; i < kNodes; ++i) ASSERT_EQ(StartNode(i), i);
  ASSERT_EQ(c_.AwaitView(c_.All(), c_.AllAlive(), 30s), "");

  CommandResult sent = c_.Cli(1, {"event", "deploy", "v1.2.3", "--format", "json"});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  const uint64_t ltime = json::parse(sent.out)["ltime"].get<uint64_t>();
  for (int i : c_.All())
    EXPECT_TRUE(WaitFor(
        [&] {
          for (const json& r : Runs(c_, c_.node(i).name))
            if (r["env"].value("STARLING_EVENT", "") == "user" && r["env"].value("STARLING_USER_EVENT", "") == "deploy" &&
                r["env"].value("STARLING_USER_LTIME", "") == std::to_string(ltime) && r.value("stdin", "") == "v1.2.3")
              return true;
          return false;
        },
        20s))
        << c_.node(i).name << " did not get the user event";

  // Too large an event is refused, saying the size and the limit.
  CommandResult big = c_.Cli(0, {"event", "big", std::string(600, 'x')});
  EXPECT_EQ(big.exit_code, 1);
  EXPECT_NE(big.err.find("at most 512"), std::string::npos) << big.err;

  // A query for role web: answered by exactly the web nodes, within the timeout.
  CommandResult q = c_.Cli(3, {"query", "ping", "--tag", "roles=web", "--timeout", "3s", "--format", "json"}, 30s);
  ASSERT_EQ(q.exit_code, 0) << q.err;
  json out = json::parse(q.out);
  std::set<std::string> answered, acked, web;
  for (auto& [name, payload] : out["responses"].items()) {
    answered.insert(name);
    EXPECT_EQ(payload.get<std::string>(), "pong from " + name + "\n");
  }
  for (const auto& a : out["acks"]) acked.insert(a.get<std::string>());
  for (int i = 0; i < kNodes; i += 2) web.insert(c_.node(i).name);
  EXPECT_EQ(answered, web);
  EXPECT_EQ(acked, web);
  EXPECT_TRUE(out["silent"].empty()) << out.dump();
  EXPECT_EQ(out["timeout_ms"], 3000);

  // --node narrows it to one member; a typo in a regex is a usage error.
  CommandResult one = c_.Cli(0, {"query", "ping", "--node", "node1", "--timeout", "1s", "--format", "json"}, 30s);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(json::parse(one.out)["responses"], json({{"node1", "pong from node1\n"}}));
  CommandResult bad = c_.Cli(0, {"query", "ping", "--tag", "roles=(web"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("not a regular expression"), std::string::npos) << bad.err;

  // Network coordinates from the probes: rtt between this node and another, and between two others.
  CommandResult rtt;
  EXPECT_TRUE(WaitFor([&] { return (rtt = c_.Cli(0, {"rtt", "node1"})).exit_code == 0; }, 30s)) << rtt.err;
  EXPECT_EQ(rtt.out.rfind("Estimated node0 <-> node1 rtt: ", 0), 0u) << rtt.out;
  EXPECT_TRUE(WaitFor([&] { return (rtt = c_.Cli(0, {"rtt", "node2", "node3", "--format", "json"})).exit_code == 0; },
                      30s))
      << rtt.err;
  json est = json::parse(rtt.out);
  EXPECT_EQ(est["from"], "node2");
  EXPECT_GT(est["rtt_ms"].get<double>(), 0.0);
  EXPECT_LT(est["rtt_ms"].get<double>(), 1000.0);
  CommandResult nobody = c_.Cli(0, {"rtt", "nobody"});
  EXPECT_EQ(nobody.exit_code, 1);
  EXPECT_NE(nobody.err.find("no member named 'nobody'"), std::string::npos) << nobody.err;
  std::optional<json> members = c_.Members(0);
  ASSERT_TRUE(members.has_value());
  for (const json& m : *members) {
    if (m["name"] == "node0") {
      EXPECT_EQ(m["coordinate"]["vec"].size(), 8u) << m.dump();
    }
  }

  // Reachability: every member acks.
  CommandResult reach = c_.Cli(0, {"reachability", "--format", "json"}, 30s);
  ASSERT_EQ(reach.exit_code, 0) << reach.out << reach.err;
  EXPECT_EQ(json::parse(reach.out)["acked"].size(), static_cast<size_t>(kNodes));
}

TEST_F(Events, AnEventHandlerThatIsNotThereStopsTheStartNamingIt) {
  const int i = c_.Launch("lonely", {"--event-handler", "user=" + handlers_ + "/no-such-handler"});
  std::optional<int> code = c_.WaitExit(i, 10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_NE(c_.LogOf(i).find("no-such-handler"), std::string::npos) << c_.LogOf(i);
  const int j = c_.Launch("typo", {"--event-handler", "member-jion=" + recorder_});
  code = c_.WaitExit(j, 10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_NE(c_.LogOf(j).find("member-jion"), std::string::npos) << c_.LogOf(j);
}

}  // namespace
}  // namespace starling::itest
