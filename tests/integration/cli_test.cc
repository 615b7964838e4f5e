// The `starling` CLI against a live two-node cluster: output formats,
// filters and run-time tag changes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "local_cluster.h"

namespace starling::itest {
namespace {

using ::testing::HasSubstr;

// Tags set at run time are the node's until changed again: a crash and a
// restart keep them; a --tag on the restart wins for its key.
TEST(Cli, RuntimeTagsOutliveARestart) {
  LocalCluster c;
  ASSERT_EQ(c.Start("alpha", {"--tag", "zone=a"}), 0);
  CommandResult set = c.Cli(0, {"tags", "--set", "role=web", "--delete", "zone"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  auto tags_of = [&] {
    std::optional<nlohmann::json> info = c.Info(0);
    return info ? (*info)["tags"] : nlohmann::json();
  };
  c.Kill(0);
  ASSERT_TRUE(c.Restart(0));
  EXPECT_EQ(tags_of(), (nlohmann::json{{"role", "web"}}));
  c.Kill(0);
  ASSERT_TRUE(c.Restart(0, {"--tag", "role=db", "--tag", "rack=r2"}));
  EXPECT_EQ(tags_of(), (nlohmann::json{{"role", "db"}, {"rack", "r2"}}));
  EXPECT_THAT(c.LogOf(0), HasSubstr("replaces the stored value 'web'"));
}

// --version names the release, the commit built and the versions spoken, and
// exits 0 without a daemon or a subcommand.
TEST(Cli, VersionNamesTheReleaseTheBuildAndTheProtocol) {
  const std::string build = R"(\(build ([0-9a-f]{12}(-dirty)?|unknown), )";
  CommandResult d = RunCommand({STARLINGD_PATH, "--version"});
  EXPECT_EQ(d.exit_code, 0) << d.err;
  EXPECT_TRUE(std::regex_match(d.out, std::regex("starlingd [0-9]+\\.[0-9]+\\.[0-9]+ " + build + "protocol 1-2\\)\n")))
      << d.out;
  // The next release, built from the same objects, understands one more.
  CommandResult next = RunCommand({STARLINGD_NEXT_PATH, "--version"});
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_TRUE(std::regex_match(next.out, std::regex("starlingd [0-9]+\\.[0-9]+\\.0 " + build + "protocol 1-3\\)\n")))
      << next.out;
  EXPECT_NE(next.out.substr(0, next.out.find(' ', 10)), d.out.substr(0, d.out.find(' ', 10)));
  CommandResult c = RunCommand({STARLING_CLI_PATH, "--version"});
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_TRUE(std::regex_match(c.out, std::regex("starling [0-9]+\\.[0-9]+\\.[0-9]+ " + build + "api 1\\)\n")))
      << c.out;
  // The same release in both.
  EXPECT_EQ(d.out.substr(10, d.out.find(' ', 10) - 10), c.out.substr(9, c.out.find(' ', 9) - 9));
}

// Text that members wrote (a tag value here; hook output, artifact versions
// and names in error messages alike) reaches the reader's terminal with its
// control characters written out, on stdout and stderr, while JSON carries
// the value itself.
TEST(Cli, ControlCharactersFromMembersAreWrittenOutNotSentToTheTerminal) {
  LocalCluster c;
  ASSERT_EQ(c.Start("alpha"), 0);
  const std::string paint = "red\x1b[2J\x1b]0;owned\x07\r";
  CommandResult set = c.Cli(0, {"tags", "--set", "color=" + paint});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_EQ(set.out.find('\x1b'), std::string::npos) << set.out;
  EXPECT_EQ(set.out.find('\r'), std::string::npos) << set.out;
  EXPECT_THAT(set.out, HasSubstr("color=red\\x1b[2J\\x1b]0;owned\\x07\\x0d\n"));
  CommandResult json_tags = c.Cli(0, {"tags", "--format", "json"});
  ASSERT_EQ(json_tags.exit_code, 0) << json_tags.err;
  EXPECT_EQ(nlohmann::json::parse(json_tags.out).value("color", ""), paint);

  // An error that repeats what was typed.
  CommandResult typo = c.Cli(0, {"members", "--format", "ghost\x1b[2J"});
  EXPECT_NE(typo.exit_code, 0);
  EXPECT_EQ(typo.err.find('\x1b'), std::string::npos) << typo.err;
  EXPECT_THAT(typo.err, HasSubstr("ghost\\x1b[2J"));
}

TEST(Cli, TagsInfoAndMemberFilters) {
  LocalCluster c;
  ASSERT_EQ(c.Start("alpha", {"--tag", "zone=a"}), 0);
  ASSERT_EQ(c.Start("beta", {"--join", c.node(0).addr}), 1);
  ASSERT_EQ(c.AwaitView(c.All(), {{"alpha", "alive"}, {"beta", "alive"}}, 30s), "");

  CommandResult set = c.Cli(0, {"tags", "--set", "role=web", "--set", "rack=r1", "--format", "json"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  nlohmann::json tags = nlohmann::json::parse(set.out);
  EXPECT_EQ(tags, (nlohmann::json{{"zone", "a"}, {"role", "web"}, {"rack", "r1"}}));

  CommandResult del = c.Cli(0, {"tags", "--delete", "rack"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_THAT(del.out, HasSubstr("role=web"));
  EXPECT_EQ(del.out.find("rack"), std::string::npos);

  // The change reaches the other node by gossip.
  std::optional<nlohmann::json> filtered;
  EXPECT_TRUE(WaitFor(
      [&] {
        CommandResult r = c.Cli(1, {"members", "--tag", "role=web", "--format", "json"});
        if (r.exit_code != 0) return false;
        filtered = nlohmann::json::parse(r.out, nullptr, false);
        return filtered->is_array() && filtered->size() == 1 && (*filtered)[0]["name"] == "alpha" &&
               !(*filtered)[0]["tags"].contains("rack");
      },
      15s))
      << (filtered ? filtered->dump() : "no output");

  CommandResult table = c.Cli(1, {"members", "--status", "alive"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("NAME"));
  EXPECT_THAT(table.out, HasSubstr("alpha"));
  EXPECT_THAT(table.out, HasSubstr(c.node(1).addr));
  CommandResult none = c.Cli(1, {"members", "--status", "failed", "--format", "json"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(nlohmann::json::parse(none.out), nlohmann::json::array());

  // Serf's filters: whole-match regular expressions for the name and a tag's value.
  auto names = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "members");
    args.insert(args.end(), {"--format", "json"});
    CommandResult r = c.Cli(1, args);
    std::vector<std::string> out;
    if (r.exit_code != 0) return std::vector<std::string>{"exit " + std::to_string(r.exit_code) + ": " + r.err};
    for (const auto& m : nlohmann::json::parse(r.out)) out.push_back(m["name"]);
    return out;
  };
  EXPECT_EQ(names({"--name", "b.*"}), std::vector<std::string>{"beta"});
  EXPECT_EQ(names({"--name", "alp"}), std::vector<std::string>{}) << "a part of a name is no match";
  EXPECT_EQ(names({"--name", "alpha|beta"}), (std::vector<std::string>{"alpha", "beta"}));
  EXPECT_EQ(names({"--tag", "role=w.b"}), std::vector<std::string>{"alpha"});
  EXPECT_EQ(names({"--tag", "role=we"}), std::vector<std::string>{});
  EXPECT_EQ(names({"--tag", "role=web", "--name", "beta"}), std::vector<std::string>{});
  CommandResult bad = c.Cli(1, {"members", "--name", "(unclosed"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("'(unclosed' is not a regular expression"));

  std::optional<nlohmann::json> info = c.Info(0);
  ASSERT_TRUE(info);
  for (const char* key :
       {"name", "addr", "cluster", "profile", "incarnation", "health_score", "protocol_version", "version",
        "members", "counters", "tags", "data_dir", "uptime_seconds"}) {
    EXPECT_TRUE(info->contains(key)) << key;
  }
  EXPECT_EQ((*info)["name"], "alpha");
  EXPECT_EQ((*info)["profile"], "local");
  EXPECT_EQ((*info)["cluster"], "itest");
  EXPECT_EQ((*info)["members"]["alive"], 2);
  EXPECT_EQ((*info)["data_dir"], c.node(0).dir);
  EXPECT_TRUE((*info)["counters"].is_object());

  CommandResult help = RunCommand({STARLING_CLI_PATH, "members", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("--status"));
}

// Mistakes on the command line: the nearest command is named, and every
// usage error exits 64 whatever CLI11 thought of it (its own codes, 105 and
// up, never leave the CLI). Nothing here needs a daemon.
TEST(Cli, UsageErrorsNameTheNearestCommandAndExit64) {
  const std::string nowhere = "/nonexistent/starlingd.sock";
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& k : std::vector<Case>{
           {{"membrs"}, "unknown command \"membrs\" (did you mean members?)"},
           {{"keys", "lsit"}, "unknown command \"lsit\" for \"starling keys\" (did you mean list?)"},
           {{"rollout", "stat"}, "(did you mean status?)"},
           {{"xyzzy"}, "unknown command \"xyzzy\"\n"},
           {{}, "a command is required: members, join,"},
           {{"keys"}, "\"starling keys\" needs a command: list, install, use, remove"},
           {{"members", "--format", "xml"}, "--format: xml not in {table,json}"},    // CLI11: 105
           {{"diff"}, "r1 is required"},                                             // 106
           {{"members", "--no-such-flag"}, "--no-such-flag"},                        // 109
           {{"--timeout", "-3", "members"}, "--timeout"},                            // 105
           {{"keys", "install"}, "KEY or --key-file"},                               // thrown by the command
       }) {
    std::vector<std::string> argv = {STARLING_CLI_PATH, "--socket", nowhere};
    argv.insert(argv.end(), k.args.begin(), k.args.end());
    CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 64) << testing::PrintToString(k.args) << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(k.says)) << testing::PrintToString(k.args);
  }
  CommandResult help = RunCommand({STARLING_CLI_PATH, "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("Exit codes (stable; scripts may rely on them):"));
  EXPECT_THAT(help.out, HasSubstr("64  the command line is wrong"));
}

TEST(Cli, ASocketPathThatIsNoSocketIsSaidSo) {
  TempDir dir;
  const std::string file = dir.path() + "/plain";
  std::ofstream(file) << "not a socket\n";
  CommandResult r = RunCommand({STARLING_CLI_PATH, "--socket", file, "members"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--socket " + file + " is a regular file, not a Unix socket"));
  r = RunCommand({STARLING_CLI_PATH, "--socket", dir.path(), "info"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--socket " + dir.path() + " is a directory, not a Unix socket"));
}

TEST(Cli, InfoLeadsWithIdentityRevisionAndLeaseAndShowsCountersOnRequest) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(2));  // gossip between two: there are counters to show
  CommandResult table = c.Cli(0, {"info"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  std::vector<std::string> labels;
  std::istringstream lines(table.out);
  for (std::string line; std::getline(lines, line);) labels.push_back(line.substr(0, line.find(':')));
  ASSERT_GE(labels.size(), 5u) << table.out;
  EXPECT_EQ(std::vector<std::string>(labels.begin(), labels.begin() + 5),
            (std::vector<std::string>{"name", "addr", "cluster", "revision", "lease holder"}));
  EXPECT_THAT(table.out, testing::Not(HasSubstr("counters")));
  CommandResult counters = c.Cli(0, {"info", "--counters"});
  ASSERT_EQ(counters.exit_code, 0) << counters.err;
  EXPECT_THAT(counters.out, HasSubstr("counters:\n  "));
  EXPECT_EQ(counters.out.rfind(table.out.substr(0, table.out.find("uptime:")), 0), 0u) << "the same table first";
  std::optional<nlohmann::json> json = c.Info(0);
  ASSERT_TRUE(json);
  EXPECT_TRUE((*json)["counters"].is_object()) << "the JSON keeps every field";
}

TEST(Cli, JoinWithoutAPortTriesTheDefaultGossipPort) {
  LocalCluster c;
  ASSERT_EQ(c.Start("alpha"), 0);
  // Whether or not something answers there, the address tried is :7946.
  CommandResult r = c.Cli(0, {"join", "127.0.0.2"}, 30s);
  EXPECT_THAT(r.out + r.err, HasSubstr("127.0.0.2:7946")) << r.out << r.err;
}

TEST(Cli, ForceLeaveSaysWhatItDid) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(2));
  c.Kill(1);
  ASSERT_EQ(c.AwaitView({0}, {{"node0", "alive"}, {"node1", "failed"}}, 30s), "");
  CommandResult r = c.Cli(0, {"force-leave", "node1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("force-leave: node1 (was failed) marked left"));
  r = c.Cli(0, {"force-leave", "node1", "--prune", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json done = nlohmann::json::parse(r.out);
  EXPECT_EQ(done["name"], "node1");
  EXPECT_EQ(done["was"], "left");
  EXPECT_EQ(done["now"], "pruned");
}

TEST(Cli, DiffShowsWholeValuesAndAUnifiedViewWithFull) {
  LocalCluster c;
  ASSERT_EQ(c.Start("alpha"), 0);
  const std::string long_value(150, 'x');
  auto doc = [&](const std::string& v, const std::string& cert_line) {
    return "roles: [web]\nservices:\n  api:\n    roles: [web]\n    hooks: {start: api-start}\n    params:\n"
           "      BANNER: \"" + v + "\"\n      CERT: \"-----BEGIN-----\\nline one\\n" + cert_line +
           "\\n-----END-----\"\n";
  };
  CommandResult first =
      c.Cli(0, {"apply", "-f", WriteFile(c, "a.yaml", doc(long_value, "line A")), "--format", "json"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string from = nlohmann::json::parse(first.out)["revision"];
  const std::string changed = long_value + "y";
  ASSERT_EQ(c.Cli(0, {"apply", "-f", WriteFile(c, "b.yaml", doc(changed, "line B"))}).exit_code, 0);

  CommandResult diff = c.Cli(0, {"diff", from});
  ASSERT_EQ(diff.exit_code, 0) << diff.err;
  EXPECT_THAT(diff.out, HasSubstr("~ services.api.params.BANNER: " + long_value + " -> " + changed + "\n"));
  EXPECT_THAT(diff.out, testing::Not(HasSubstr("...")));
  // A multi-line value stays on its line, quoted.
  EXPECT_THAT(diff.out, HasSubstr("~ services.api.params.CERT: \"-----BEGIN-----\\nline one\\nline A\\n-----END-----\" "
                                  "-> \"-----BEGIN-----\\nline one\\nline B\\n-----END-----\"\n"));

  CommandResult full = c.Cli(0, {"diff", from, "--full"});
  ASSERT_EQ(full.exit_code, 0) << full.err;
  EXPECT_THAT(full.out, HasSubstr("~ services.api.params.CERT:\n"
                                  "      -----BEGIN-----\n"
                                  "      line one\n"
                                  "    - line A\n"
                                  "    + line B\n"
                                  "      -----END-----\n"));
}

}  // namespace
}  // namespace starling::itest
