// The daemon's flag parsing helpers.
#include <gtest/gtest.h>

#include "address.h"
#include "flags.h"

namespace starling::node {
namespace {

using namespace std::chrono_literals;

TEST(ParseDuration, AcceptsUnitsAndSequences) {
  EXPECT_EQ(*ParseDuration("24h"), Duration(24h));
  EXPECT_EQ(*ParseDuration("30s"), Duration(30s));
  EXPECT_EQ(*ParseDuration("500ms"), Duration(500ms));
  EXPECT_EQ(*ParseDuration("1h30m"), Duration(90min));
  EXPECT_EQ(*ParseDuration("250us"), Duration(250us));
  EXPECT_EQ(*ParseDuration("2d"), Duration(48h));
}

TEST(ParseDuration, RejectsWhatIsNotADuration) {
  for (const char* bad : {"", "5", "s", "-5s", "5 s", "5x", "1.5s", "99999999999999999999h", "3650d1h"}) {
    Result<Duration> d = ParseDuration(bad);
    EXPECT_FALSE(d.ok()) << bad;
    if (!d.ok()) {
      EXPECT_NE(d.status().message().find(std::string("'") + bad + "'"), std::string::npos) << bad;
    }
  }
}

TEST(ParseDaemonFlags, HooksDirDefaultsUnderTheDataDir) {
  std::vector<std::string> args = {"starlingd", "--data-dir", "/tmp/d1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ParseOutcome o = ParseDaemonFlags(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(o.options);
  EXPECT_EQ(o.options->hooks_dir, "/tmp/d1/hooks");
  args = {"starlingd", "--data-dir", "/tmp/d1", "--hooks-dir", "/etc/starling/hooks"};
  argv.clear();
  for (auto& a : args) argv.push_back(a.data());
  o = ParseDaemonFlags(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(o.options);
  EXPECT_EQ(o.options->hooks_dir, "/etc/starling/hooks");
}

TEST(ParseHostPort, Forms) {
  Result<HostPort> v4 = ParseHostPort("10.1.2.3:7946");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->host, "10.1.2.3");
  EXPECT_EQ(v4->port, 7946);
  Result<HostPort> v6 = ParseHostPort("[::1]:80");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(FormatHostPort(v6->host, v6->port), "[::1]:80");
  EXPECT_EQ(ParseHostPort("example.org:0")->port, 0);
  for (const char* bad : {"", "host", "host:", ":x", "h:65536", "::1:80", "[::1]80", "h:-1"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
}

TEST(ParseTag, KeyValue) {
  membership::Tags tags;
  EXPECT_TRUE(ParseTag("role=web", tags).ok());
  EXPECT_TRUE(ParseTag("empty=", tags).ok());
  EXPECT_TRUE(ParseTag("expr=a=b", tags).ok());
  EXPECT_EQ(tags, (membership::Tags{{"role", "web"}, {"empty", ""}, {"expr", "a=b"}}));
  EXPECT_FALSE(ParseTag("=v", tags).ok());
  EXPECT_FALSE(ParseTag("novalue", tags).ok());
}

}  // namespace
}  // namespace starling::node
