// The `starling` CLI against a live two-node cluster: output formats,
// filters and run-time tag changes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

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

}  // namespace
}  // namespace starling::itest
