// The daemon's flag parsing helpers.
#include <gtest/gtest.h>

#include "address.h"
#include "flags.h"
#include "keyring_file.h"
#include "starling/store/document.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

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

// One grammar for flags and documents: what a document accepts, a flag
// accepts, and the other way round.
TEST(ParseDuration, FlagsTakeTheDocumentsGrammar) {
  std::vector<std::string> args = {"starlingd", "--data-dir", "/tmp/d1", "--reap-timeout", "1d12h",
                                   "--artifact-grace", "90s"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ParseOutcome o = ParseDaemonFlags(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(o.options);
  EXPECT_EQ(o.options->reap_timeout, Duration(36h));
  EXPECT_EQ(o.options->artifact_grace, Duration(90s));
  for (const char* text : {"1d", "1d12h", "1h30m", "500ms", "250us"}) {
    store::Json doc = {{"policy", {{"node_deadline", text}}}};
    EXPECT_TRUE(store::ValidateDocument(doc).ok()) << text;
    EXPECT_TRUE(ParseDuration(text).ok()) << text;
  }
  // Units largest first, each once: the same refusal in both places.
  for (const char* text : {"30m1h", "1s1s"}) {
    store::Json doc = {{"policy", {{"node_deadline", text}}}};
    EXPECT_FALSE(store::ValidateDocument(doc).ok()) << text;
    EXPECT_FALSE(ParseDuration(text).ok()) << text;
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

TEST(LoopbackHost, OnlyNamesThisMachineAloneReaches) {
  for (const char* yes : {"127.0.0.1", "127.255.0.9", "::1", "localhost"}) EXPECT_TRUE(IsLoopbackHost(yes)) << yes;
  for (const char* no : {"", "127.0.0", "127.0.0.1.evil.example", "127.0.0.256", "127.00.0.1", "128.0.0.1",
                         "0.0.0.0", "::", "localhost.evil.example", "10.0.0.1", "127.0.0.1x"})
    EXPECT_FALSE(IsLoopbackHost(no)) << no;
  EXPECT_EQ(HostOfHostHeader("127.0.0.1:7947"), "127.0.0.1");
  EXPECT_EQ(HostOfHostHeader("[::1]:7947"), "::1");
  EXPECT_EQ(HostOfHostHeader("[::1]"), "::1");
  EXPECT_EQ(HostOfHostHeader("evil.example"), "evil.example");
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

TEST(ParseDaemonFlags, EncryptKeyIsCheckedAndNeverEchoed) {
  const std::string key = membership::Keyring::FormatKey(membership::Keyring::Generate());
  std::vector<std::string> args = {"starlingd", "--encrypt", key};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ParseOutcome o = ParseDaemonFlags(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(o.options);
  ASSERT_TRUE(o.options->encrypt);
  EXPECT_EQ(membership::Keyring::FormatKey(*o.options->encrypt), key);

  args = {"starlingd", "--encrypt", "c2VjcmV0LWJ1dC1zaG9ydA=="};
  argv.clear();
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStderr();
  o = ParseDaemonFlags(static_cast<int>(argv.size()), argv.data());
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(o.options);
  EXPECT_NE(err.find("--encrypt: the key decodes to 16 bytes, not 32"), std::string::npos) << err;
  EXPECT_EQ(err.find(args[2]), std::string::npos) << "the key itself must not be printed";
}

TEST(KeyringFile, SavedOwnerOnlyAndLoadedBackInOrder) {
  char tmpl[] = "/tmp/stl-ring-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = KeyringPath(tmpl);
  auto none = LoadKeyring(path);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value()) << "no file, no keyring";
  membership::Keyring ring;
  const auto a = membership::Keyring::Generate(), b = membership::Keyring::Generate();
  ASSERT_TRUE(ring.Install(a).ok());
  ASSERT_TRUE(ring.Install(b).ok());
  ASSERT_TRUE(ring.Use(b).ok());
  ASSERT_TRUE(SaveKeyring(path, ring).ok());
  struct stat st{};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto back = LoadKeyring(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_TRUE(back->has_value());
  EXPECT_EQ((*back)->keys(), (std::vector<membership::Key>{b, a}));

  for (const char* bad : {"", "[]", "{\"keys\": []}", "{\"keys\": [1]}", "{\"keys\": [\"c2hvcnQ=\"]}", "{"}) {
    std::ofstream(path) << bad;
    auto r = LoadKeyring(path);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
    }
  }
  std::system(("rm -rf " + std::string(tmpl)).c_str());
}

}  // namespace
}  // namespace starling::node
