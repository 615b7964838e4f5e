// The daemon's flag parsing helpers.
#include <gtest/gtest.h>

#include "address.h"
#include "flags.h"
#include "keyring_file.h"
#include "starling/store/document.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

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
  (void)!std::system(("rm -rf " + std::string(tmpl)).c_str());
}

// Parses starlingd's flags, capturing what it says on stderr.
struct Parsed {
  ParseOutcome outcome;
  std::string err;
};
Parsed Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "starlingd");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStderr();
  ParseOutcome o = ParseDaemonFlags(static_cast<int>(argv.size()), argv.data());
  return {std::move(o), testing::internal::GetCapturedStderr()};
}

// A directory for config files, removed at the end.
class ConfigDir {
 public:
  ConfigDir() {
    char tmpl[] = "/tmp/stl-conf-XXXXXX";
    path_ = mkdtemp(tmpl);
    chmod(path_.c_str(), 0755);
    mkdir((path_ + "/d").c_str(), 0755);
  }
  ~ConfigDir() { (void)!std::system(("rm -rf " + path_).c_str()); }
  std::string Write(const std::string& name, const std::string& text, mode_t mode = 0644) const {
    const std::string file = path_ + "/" + name;
    std::ofstream(file) << text;
    chmod(file.c_str(), mode);
    return file;
  }
  const std::string& path() const { return path_; }
  std::string dropins() const { return path_ + "/d"; }

 private:
  std::string path_;
};

TEST(ConfigFiles, DropInsAreReadInOrderAfterTheFileAndTheCommandLineWins) {
  ConfigDir c;
  const std::string main = c.Write("main.toml",
                                   "bind = \"127.0.0.1:7000\"\ncluster = \"from-main\"\ntag = [\"a=1\", \"b=2\"]\n"
                                   "join = [\"10.0.0.1:7946\"]\nui-write = true\nreap-timeout = \"1h\"\n");
  c.Write("d/20-late.toml", "cluster = \"from-20\"\ntag = [\"c=3\"]\n");
  c.Write("d/10-early.toml", "cluster = \"from-10\"\nbind = \"127.0.0.1:7001\"\njoin = []\n");
  c.Write("d/30-ignored.conf", "cluster = \"not-toml\"\n");  // only *.toml
  c.Write("d/.40-hidden.toml", "cluster = \"hidden\"\n");
  Parsed p = Parse({"--config", main, "--config-dir", c.dropins(), "--reap-timeout", "2h"});
  ASSERT_TRUE(p.outcome.options) << p.err;
  const DaemonOptions& o = *p.outcome.options;
  EXPECT_EQ(o.cluster, "from-20") << "the later drop-in wins";
  EXPECT_EQ(o.bind.port, 7001) << "a drop-in wins over the main file";
  EXPECT_EQ(o.tags, (membership::Tags{{"c", "3"}})) << "a list is replaced as a whole";
  EXPECT_TRUE(o.join.empty()) << "join = [] clears the main file's seeds";
  EXPECT_TRUE(o.ui_write) << "a key no later file names keeps its value";
  EXPECT_EQ(o.reap_timeout, Duration(std::chrono::hours(2))) << "the command line wins over every file";
  EXPECT_EQ(o.config_files,
            (std::vector<std::string>{main, c.dropins() + "/10-early.toml", c.dropins() + "/20-late.toml"}));
}

TEST(ConfigFiles, AMistakeNamesTheFileTheKeyAndTheValue) {
  ConfigDir c;
  struct Case {
    std::string text, expected;
  };
  for (const Case& k : std::vector<Case>{
           {"bnd = \"127.0.0.1:1\"\n", "bad.toml: unknown key 'bnd' (did you mean bind?)"},
           {"retry-max = \"lots\"\n", "bad.toml: retry-max = \"lots\": "},
           {"profile = \"fast\"\n", "bad.toml: profile = \"fast\": "},
           {"bind = \"nowhere\"\n", "bind (in " + c.path() + "/bad.toml): address 'nowhere' has no port"},
           {"reap-timeout = \"soon\"\n", "reap-timeout (in " + c.path() + "/bad.toml): malformed duration 'soon'"},
           {"check-config = true\n", "unknown key 'check-config': --check-config is for the command line only"},
           {"[gossip]\nbind = \"127.0.0.1:1\"\n", "section [gossip]: starlingd's config has no sections"},
       }) {
    const std::string file = c.Write("bad.toml", k.text);
    Parsed p = Parse({"--config", file});
    EXPECT_FALSE(p.outcome.options) << k.text;
    EXPECT_EQ(p.outcome.exit_code, 2) << k.text;
    EXPECT_NE(p.err.find(k.expected), std::string::npos) << k.text << " said: " << p.err;
  }
  Parsed missing = Parse({"--config", c.path() + "/none.toml"});
  EXPECT_FALSE(missing.outcome.options);
  EXPECT_NE(missing.err.find("--config " + c.path() + "/none.toml: No such file"), std::string::npos) << missing.err;
}

TEST(ConfigFiles, AFileOthersCanWriteIsRefused) {
  ConfigDir c;
  const std::string file = c.Write("open.toml", "cluster = \"x\"\n", 0666);
  Parsed p = Parse({"--config", file});
  EXPECT_FALSE(p.outcome.options);
  EXPECT_NE(p.err.find(file + " is writable by every user"), std::string::npos) << p.err;
  c.Write("d/10.toml", "cluster = \"y\"\n", 0664);
  p = Parse({"--config-dir", c.dropins()});
  EXPECT_FALSE(p.outcome.options);
  EXPECT_NE(p.err.find("10.toml is writable by its group"), std::string::npos) << p.err;
}

TEST(ConfigFiles, TheKeyFileMustBeOwnerOnlyAndHoldAKey) {
  ConfigDir c;
  const std::string key = membership::Keyring::FormatKey(membership::Keyring::Generate());
  const std::string good = c.Write("cluster.key", key + "\n", 0600);
  Parsed p = Parse({"--encrypt-file", good});
  ASSERT_TRUE(p.outcome.options) << p.err;
  ASSERT_TRUE(p.outcome.options->encrypt);
  EXPECT_EQ(membership::Keyring::FormatKey(*p.outcome.options->encrypt), key);
  EXPECT_EQ(p.outcome.options->encrypt_source, "--encrypt-file " + good);

  const std::string readable = c.Write("readable.key", key + "\n", 0640);
  p = Parse({"--encrypt-file", readable});
  EXPECT_FALSE(p.outcome.options);
  EXPECT_NE(p.err.find(readable + " is readable by its group (mode 0640): the cluster key must be owner-only; "
                                  "run `chmod 600 " + readable + "`"),
            std::string::npos)
      << p.err;
  const std::string garbage = c.Write("garbage.key", "not-a-key-at-all\n", 0600);
  p = Parse({"--encrypt-file", garbage});
  EXPECT_FALSE(p.outcome.options);
  EXPECT_NE(p.err.find("--encrypt-file " + garbage + ": "), std::string::npos) << p.err;
  if (geteuid() == 0) {
    ASSERT_EQ(chown(good.c_str(), 65534, 65534), 0);
    p = Parse({"--encrypt-file", good});
    EXPECT_FALSE(p.outcome.options);
    EXPECT_NE(p.err.find("is owned by uid 65534"), std::string::npos) << p.err;
    ASSERT_EQ(chown(good.c_str(), 0, 0), 0);
  }
  p = Parse({"--encrypt-file", good, "--encrypt", key});
  EXPECT_FALSE(p.outcome.options);
  EXPECT_NE(p.err.find("--encrypt and --encrypt-file both give the cluster key"), std::string::npos) << p.err;
  EXPECT_EQ(p.err.find(key), std::string::npos) << "the key itself is never printed";

  // In a config file the key file's name is the setting; the environment
  // is read only when neither key setting is there.
  const std::string conf = c.Write("k.toml", "encrypt-file = \"" + good + "\"\n");
  setenv("STARLING_ENCRYPT_KEY", membership::Keyring::FormatKey(membership::Keyring::Generate()).c_str(), 1);
  p = Parse({"--config", conf});
  ASSERT_TRUE(p.outcome.options) << p.err;
  EXPECT_EQ(membership::Keyring::FormatKey(*p.outcome.options->encrypt), key) << "the file's key, not the env's";
  p = Parse({});
  ASSERT_TRUE(p.outcome.options) << p.err;
  EXPECT_EQ(p.outcome.options->encrypt_source, "STARLING_ENCRYPT_KEY");
  unsetenv("STARLING_ENCRYPT_KEY");
}

// The config the package ships documents every setting with its default, in
// the very line `--check-config` prints for it, and is itself a valid config.
TEST(ConfigFiles, TheShippedConfigDocumentsEverySettingWithItsDefault) {
  std::ifstream shipped(STARLING_SHIPPED_CONFIG);
  ASSERT_TRUE(shipped) << STARLING_SHIPPED_CONFIG;
  std::set<std::string> documented;
  for (std::string line; std::getline(shipped, line);)
    if (line.rfind("# ", 0) == 0 && line.find(" = ") != std::string::npos &&
        line.find_first_not_of("abcdefghijklmnopqrstuvwxyz-", 2) == line.find(" = "))
      documented.insert(line.substr(2));
  Parsed defaults = Parse({"--check-config"});
  ASSERT_TRUE(defaults.outcome.options) << defaults.err;
  std::set<std::string> effective;
  std::istringstream lines(defaults.outcome.options->effective_config);
  for (std::string line; std::getline(lines, line);) effective.insert(line);
  EXPECT_EQ(documented, effective);

  // As shipped it names the key file the package tells operators to make.
  Parsed as_shipped = Parse({"--config", STARLING_SHIPPED_CONFIG, "--check-config"});
  EXPECT_FALSE(as_shipped.outcome.options);
  EXPECT_NE(as_shipped.err.find("encrypt-file (in " STARLING_SHIPPED_CONFIG ") /etc/starling/cluster.key"),
            std::string::npos)
      << as_shipped.err;
  Parsed without_key = Parse({"--config", STARLING_SHIPPED_CONFIG, "--encrypt-file", "", "--check-config"});
  EXPECT_TRUE(without_key.outcome.options) << without_key.err;
}

TEST(ParseDaemonFlags, SeedsWithoutAPortAreOnTheDefaultPort) {
  Parsed p = Parse({"--join", "10.0.0.4", "--join", "seed.example.net:8000", "--retry-join", "[fd00::1]",
                    "--retry-join", "fd00::2"});
  ASSERT_TRUE(p.outcome.options) << p.err;
  EXPECT_EQ(p.outcome.options->join, (std::vector<std::string>{"10.0.0.4:7946", "seed.example.net:8000",
                                                               "[fd00::1]:7946", "[fd00::2]:7946"}));
  EXPECT_EQ(WithDefaultPort("host:"), "host:") << "left for ParseHostPort to refuse";
}

}  // namespace
}  // namespace starling::node
