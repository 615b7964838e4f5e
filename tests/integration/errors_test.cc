// Operator mistakes and collisions: each must fail fast, non-zero, with a
// message that names what is wrong.
#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "local_cluster.h"
#include "schema/api.capnp.h"

namespace starling::itest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A bare starlingd with its own dirs under `root`, not part of a cluster.
CommandResult RunDaemon(const std::string& root, std::vector<std::string> extra, Millis timeout = 15s) {
  std::vector<std::string> argv = {STARLINGD_PATH, "--profile", "local"};
  bool has_name = false, has_data_dir = false, has_socket = false, has_bind = false, has_http = false;
  for (const std::string& a : extra) {
    has_http |= a == "--http";
    has_name |= a == "--name";
    has_data_dir |= a == "--data-dir";
    has_socket |= a == "--socket";
    has_bind |= a == "--bind";
  }
  if (!has_name) argv.insert(argv.end(), {"--name", "lonely"});
  if (!has_data_dir) argv.insert(argv.end(), {"--data-dir", root + "/data"});
  if (!has_socket) argv.insert(argv.end(), {"--socket", root + "/api.sock"});
  if (!has_bind) argv.insert(argv.end(), {"--bind", "127.0.0.1:0"});
  if (!has_http) argv.insert(argv.end(), {"--http", "127.0.0.1:0"});
  argv.insert(argv.end(), extra.begin(), extra.end());
  return RunCommand(argv, timeout);
}

// Holds a socket bound to 127.0.0.1 on a free port.
class BoundPort {
 public:
  explicit BoundPort(int type) : fd_(socket(AF_INET, type, 0)) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    if (type == SOCK_STREAM) listen(fd_, 1);
    socklen_t len = sizeof(sa);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
  }
  ~BoundPort() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

// One raw exchange on the API socket: lets the test speak a wrong version.
std::vector<uint64_t> RawApiExchange(const std::string& path, const std::vector<uint8_t>& frame) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
  std::vector<uint64_t> reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 &&
      send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(frame.size())) {
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint32_t len = 0;
    if (recv(fd, &len, 4, MSG_WAITALL) == 4 && len % 8 == 0 && len < (1u << 20)) {
      reply.resize(len / 8);
      if (recv(fd, reply.data(), len, MSG_WAITALL) != static_cast<ssize_t>(len)) reply.clear();
    }
  }
  close(fd);
  return reply;
}

std::vector<uint8_t> Frame(const std::vector<uint8_t>& body, uint32_t claimed_length) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(claimed_length >> (8 * i)));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::string ReplyError(const std::vector<uint64_t>& reply) {
  if (reply.empty()) return "<no reply>";
  capnp::FlatArrayMessageReader reader(
      kj::ArrayPtr<const capnp::word>(reinterpret_cast<const capnp::word*>(reply.data()), reply.size()));
  return reader.getRoot<api::Reply>().getError().cStr();
}

TEST(Errors, UnknownFlagIsNamed) {
  TempDir dir;
  CommandResult r = RunDaemon(dir.path(), {"--frobnicate", "yes"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("--frobnicate"));
}

TEST(Errors, BadFlagValuesAreNamed) {
  TempDir dir;
  CommandResult profile = RunDaemon(dir.path(), {"--profile", "warp"});
  EXPECT_NE(profile.exit_code, 0);
  EXPECT_THAT(profile.err, HasSubstr("--profile"));
  CommandResult bind = RunDaemon(dir.path(), {"--bind", "127.0.0.1"});
  EXPECT_NE(bind.exit_code, 0);
  EXPECT_THAT(bind.err, HasSubstr("--bind"));
  CommandResult reap = RunDaemon(dir.path(), {"--reap-timeout", "5 parsecs"});
  EXPECT_NE(reap.exit_code, 0);
  EXPECT_THAT(reap.err, HasSubstr("--reap-timeout"));
  CommandResult tag = RunDaemon(dir.path(), {"--tag", "novalue"});
  EXPECT_NE(tag.exit_code, 0);
  EXPECT_THAT(tag.err, HasSubstr("novalue"));
}

TEST(Errors, UdpPortInUseIsNamed) {
  TempDir dir;
  BoundPort taken(SOCK_DGRAM);
  std::string addr = "127.0.0.1:" + std::to_string(taken.port());
  CommandResult r = RunDaemon(dir.path(), {"--bind", addr});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("cannot bind " + addr + " (UDP)"));
  EXPECT_THAT(r.err, HasSubstr("in use"));
}

TEST(Errors, TcpPortInUseIsNamed) {
  TempDir dir;
  BoundPort taken(SOCK_STREAM);
  std::string addr = "127.0.0.1:" + std::to_string(taken.port());
  CommandResult r = RunDaemon(dir.path(), {"--bind", addr});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("cannot bind " + addr + " (TCP)"));
}

// The HTTP port of a live daemon is busy like its --bind port: a second
// daemon that shared it would answer half the scrapes as the wrong node.
TEST(Errors, HttpPortOfALiveDaemonIsRefused) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  auto info = c.Info(0);
  ASSERT_TRUE(info);
  const std::string http = info->value("http", "");
  ASSERT_FALSE(http.empty());
  TempDir dir;
  CommandResult r = RunDaemon(dir.path(), {"--name", "other", "--http", http}, 15s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("--http " + http));
  EXPECT_THAT(r.err, HasSubstr("in use"));
}

TEST(Errors, UnusableDataDirIsNamed) {
  TempDir dir;
  std::string file = dir.path() + "/plain-file";
  std::ofstream(file) << "not a directory";
  std::string data_dir = file + "/data";
  CommandResult r = RunDaemon(dir.path(), {"--data-dir", data_dir});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr(data_dir));
}

// The daemon runs as root and its data dir holds every param of the desired
// state: what it creates there is owner-only, its own dir that others can
// read is closed, and a data or hooks dir that another user owns or can
// write is refused, naming the path and what is wrong.
TEST(Errors, DataDirIsOwnerOnlyAndDirsOthersControlAreRefused) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  const std::string dir = c.node(0).dir;
  std::ofstream(c.root() + "/doc.yaml") << "roles: [web]\npackages:\n  web: {version: \"1.0\", roles: [web]}\n";
  ASSERT_EQ(c.Cli(0, {"apply", "-f", c.root() + "/doc.yaml"}).exit_code, 0);
  auto loose = [](const std::string& root) {
    std::string out;
    auto mode = [](const std::filesystem::path& p) {
      struct stat st {};
      return lstat(p.c_str(), &st) == 0 ? st.st_mode & 0777 : 0777;
    };
    if (mode(root) & 077) out += root + " ";
    for (const auto& e : std::filesystem::recursive_directory_iterator(root))
      if (mode(e.path()) & 077) out += e.path().string() + " ";
    return out;
  };
  EXPECT_EQ(loose(dir), "") << "readable by others";
  EXPECT_TRUE(std::filesystem::exists(dir + "/CURRENT")) << "the check saw the store's files";

  c.Kill(0);
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  ASSERT_TRUE(c.Restart(0));
  struct stat st {};
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_THAT(c.LogOf(0), HasSubstr("data dir " + dir + " was mode 0755, readable by others: made it 0700"));
  c.Kill(0);

  ASSERT_EQ(chmod(dir.c_str(), 0777), 0);
  CommandResult open = RunDaemon(c.root(), {"--name", "node0", "--data-dir", dir});
  EXPECT_EQ(open.exit_code, 1) << open.err;
  EXPECT_THAT(open.err, HasSubstr("data dir " + dir + " is writable by every user (mode 0777)"));
  ASSERT_EQ(chmod(dir.c_str(), 0700), 0);
  if (geteuid() == 0) {
    ASSERT_EQ(chown(dir.c_str(), 65534, 65534), 0);
    CommandResult foreign = RunDaemon(c.root(), {"--name", "node0", "--data-dir", dir});
    EXPECT_EQ(foreign.exit_code, 1) << foreign.err;
    EXPECT_THAT(foreign.err, HasSubstr("data dir " + dir + " is owned by uid 65534"));
    ASSERT_EQ(chown(dir.c_str(), 0, 0), 0);
  }
  const std::string hooks = c.root() + "/shared-hooks";
  ASSERT_EQ(mkdir(hooks.c_str(), 0700), 0);
  ASSERT_EQ(chmod(hooks.c_str(), 0775), 0);
  CommandResult group = RunDaemon(c.root(), {"--name", "node0", "--data-dir", dir, "--hooks-dir", hooks});
  EXPECT_EQ(group.exit_code, 1) << group.err;
  EXPECT_THAT(group.err, HasSubstr("hooks dir " + hooks + " is writable by its group (mode 0775)"));
}

TEST(Errors, DataDirOfALiveDaemonIsRefused) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  CommandResult r = RunDaemon(
      c.root(), {"--name", "node0", "--data-dir", c.node(0).dir, "--socket", c.root() + "/other.sock"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr(c.node(0).dir));
}

TEST(Errors, DataDirOfAnotherNameIsRefused) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  c.Kill(0);
  CommandResult r = RunDaemon(c.root(), {"--name", "impostor", "--data-dir", c.node(0).dir});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("node0"));
  EXPECT_THAT(r.err, HasSubstr("impostor"));
}

TEST(Errors, LiveSocketIsNotStolen) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  CommandResult r = RunDaemon(c.root(), {"--socket", c.node(0).socket});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr(c.node(0).socket));
  // The first daemon still answers on it.
  EXPECT_TRUE(c.Info(0));
}

// The API socket's mode is its access control: owner only, or a named group.
TEST(Errors, ApiSocketIsOwnerOnlyUnlessAGroupIsNamed) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  struct stat st {};
  ASSERT_EQ(stat(c.node(0).socket.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // Our own primary group: giving a socket to it is always allowed.
  const group* g = getgrgid(getgid());
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(c.Start("node1", {"--socket-group", g->gr_name}), 1);
  ASSERT_EQ(stat(c.node(1).socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, getgid());
  EXPECT_TRUE(c.Info(1));

  CommandResult r = RunDaemon(c.root(), {"--socket-group", "no-such-group-here"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("--socket-group 'no-such-group-here': no such group"));
}

TEST(Errors, CliWithoutDaemonExitsTwoAndSaysWhy) {
  TempDir dir;
  std::string socket = dir.path() + "/nobody.sock";
  CommandResult r = RunCommand({STARLING_CLI_PATH, "--socket", socket, "members"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot reach starlingd at " + socket));
  EXPECT_THAT(r.err, HasSubstr("STARLING_SOCKET"));
}

TEST(Errors, SecondNodeWithALiveNameIsRefused) {
  LocalCluster c;
  ASSERT_EQ(c.Start("twin"), 0);
  ASSERT_EQ(c.Start("other", {"--join", c.node(0).addr}), 1);
  int impostor = c.Launch("twin", {"--join", c.node(0).addr});
  std::optional<int> code = c.WaitExit(impostor, 30s);
  ASSERT_TRUE(code.has_value()) << "a second 'twin' at another address was not refused";
  EXPECT_NE(*code, 0);
  EXPECT_THAT(c.LogOf(impostor), HasSubstr("cannot join the cluster as 'twin'"));
  // The original keeps its place.
  EXPECT_EQ(c.AwaitView({0, 1}, {{"twin", "alive"}, {"other", "alive"}}, 10s), "");
}

TEST(Errors, ApiRejectsWrongVersionAndOversizedFrames) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  capnp::MallocMessageBuilder b;
  auto request = b.initRoot<api::Request>();
  request.setVersion(static_cast<uint16_t>(api::API_VERSION + 41));
  request.setInfo();
  auto words = capnp::messageToFlatArray(b);
  std::vector<uint8_t> body(words.asBytes().begin(), words.asBytes().end());
  EXPECT_THAT(ReplyError(RawApiExchange(c.node(0).socket, Frame(body, static_cast<uint32_t>(body.size())))),
              HasSubstr("version"));
  EXPECT_THAT(ReplyError(RawApiExchange(c.node(0).socket, Frame({}, 64u << 20))), HasSubstr("limit"));
  EXPECT_THAT(ReplyError(RawApiExchange(c.node(0).socket, Frame({1, 2, 3, 4, 5, 6, 7}, 7))),
              HasSubstr("malformed"));
  // A document far past the limit gets the daemon's reason, not "Broken pipe".
  {
    std::ofstream big(c.root() + "/big.yaml");
    big << "roles: [web]\nservices:\n  web:\n    params:\n      BLOB: \"" << std::string(50u << 20, 'x') << "\"\n";
  }
  CommandResult huge = c.Cli(0, {"apply", "-f", c.root() + "/big.yaml"});
  EXPECT_EQ(huge.exit_code, 1);
  EXPECT_THAT(huge.err, HasSubstr("exceeds the 8388608-byte limit"));
  EXPECT_THAT(huge.err, Not(HasSubstr("Broken pipe")));
  // Bad input named in CLI errors too, with exit code 1.
  CommandResult join = c.Cli(0, {"join", "no-port-here"});
  EXPECT_EQ(join.exit_code, 1);
  EXPECT_THAT(join.err, HasSubstr("no-port-here"));
  CommandResult fl = c.Cli(0, {"force-leave", "ghost"});
  EXPECT_EQ(fl.exit_code, 1);
  EXPECT_THAT(fl.err, HasSubstr("ghost"));
  EXPECT_TRUE(c.Info(0));
}


// Another user puts a socket where the CLI looks (a fake daemon, to catch a
// key or a document, or to answer with lies): the CLI sends it nothing, and
// says who serves it; --socket-owner names a daemon user to trust instead.
TEST(Errors, CliTalksOnlyToASocketServedByRootOrItsCaller) {
  TempDir dir;
  const std::string run = dir.path() + "/run";
  ASSERT_EQ(chmod(dir.path().c_str(), 0711), 0);  // nobody passes through to run/
  ASSERT_EQ(mkdir(run.c_str(), 0777), 0);
  ASSERT_EQ(chmod(run.c_str(), 0777), 0);
  const std::string path = run + "/starlingd.sock";
  // A listener run as nobody that exits 1 when a client sent it anything.
  auto fake = [&] {
    int ready[2];
    EXPECT_EQ(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(ready[0]);
      if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
      unlink(path.c_str());
      int s = socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
      if (bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || listen(s, 4) != 0) _exit(4);
      if (write(ready[1], "r", 1) != 1) _exit(5);
      int conn = accept(s, nullptr, nullptr);
      timeval tv{10, 0};
      setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      char buf[4096];
      ssize_t total = 0, n;
      while ((n = read(conn, buf, sizeof buf)) > 0) total += n;
      _exit(total > 0 ? 1 : 0);
    }
    close(ready[1]);
    char c = 0;
    EXPECT_EQ(read(ready[0], &c, 1), 1) << "the fake daemon did not start";
    close(ready[0]);
    return pid;
  };
  auto exit_of = [](pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  const std::string key = "c3RhcmxpbmctdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE=";  // 32 bytes

  pid_t pid = fake();
  CommandResult refused = RunCommand({STARLING_CLI_PATH, "--socket", path, "keys", "install", key});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("refusing to talk to " + path + ": it is served by uid 65534"));
  EXPECT_THAT(refused.err, HasSubstr("neither root nor you"));
  EXPECT_EQ(exit_of(pid), 0) << "the fake daemon was sent the request";

  // Named as the daemon's user, it is talked to (and sent the request).
  pid = fake();
  CommandResult trusted = RunCommand({STARLING_CLI_PATH, "--socket", path, "--socket-owner", "65534", "--timeout",
                                      "2", "info"});
  EXPECT_EQ(trusted.exit_code, 2);
  EXPECT_THAT(trusted.err, Not(HasSubstr("refusing")));
  EXPECT_EQ(exit_of(pid), 1) << "the request did not reach the named owner's socket";

  CommandResult typo = RunCommand({STARLING_CLI_PATH, "--socket", path, "--socket-owner", "no-such-user", "info"});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_THAT(typo.err, HasSubstr("--socket-owner: no user named 'no-such-user'"));
}

// The attack: a member of --socket-group asks the root daemon to add
// /etc/shadow (or its own /proc/PID/environ) as an artifact, which would
// ship it to every node. A path in a request is never opened; the CLI opens
// the file with its caller's rights and passes it open.
TEST(Errors, ArtifactAddReadsOnlyWhatTheCallerCouldOpen) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0", {"--socket-group", "nogroup"}), 0);
  const std::string secret = c.root() + "/secret";
  {
    std::ofstream out(secret);
    out << "root's secret\n";
  }
  ASSERT_EQ(chmod(secret.c_str(), 0600), 0);

  // A client that names a path, as an older CLI (or a hand-made request) does.
  capnp::MallocMessageBuilder b;
  auto request = b.initRoot<api::Request>();
  request.setVersion(api::API_VERSION);
  auto a = request.initArtifact();
  a.setOp("add");
  a.setPath(secret);
  auto words = capnp::messageToFlatArray(b);
  std::vector<uint8_t> body(words.asBytes().begin(), words.asBytes().end());
  EXPECT_THAT(ReplyError(RawApiExchange(c.node(0).socket, Frame(body, static_cast<uint32_t>(body.size())))),
              HasSubstr("never opens a path a client names"));
  auto ls = c.Cli(0, {"artifact", "ls", "--format", "json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_EQ(nlohmann::json::parse(ls.out)["artifacts"].size(), 0u) << ls.out;

  if (geteuid() != 0) GTEST_SKIP() << "the rest runs the CLI as another user, which needs root";
  // The group member (uid and gid 65534) reaches the socket...
  const std::string dir = c.node(0).dir;
  ASSERT_EQ(chmod(dir.c_str(), 0711), 0);
  auto as_nobody = [&](const std::string& file) {
    return RunCommand({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", STARLING_CLI_PATH,
                       "--socket", c.node(0).socket, "artifact", "add", file, "--format", "json"});
  };
  // ...and cannot add what it cannot read,
  auto refused = as_nobody(secret);
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr(secret + ": Permission denied"));
  // but can add what it can.
  const std::string open = c.root() + "/public";
  {
    std::ofstream out(open);
    out << "for everyone\n";
  }
  ASSERT_EQ(chmod(open.c_str(), 0644), 0);
  ASSERT_EQ(chmod(c.root().c_str(), 0711), 0);
  auto added = as_nobody(open);
  ASSERT_EQ(chmod(dir.c_str(), 0700), 0);
  EXPECT_EQ(added.exit_code, 0) << added.out << added.err;
  ls = c.Cli(0, {"artifact", "ls", "--format", "json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  auto listed = nlohmann::json::parse(ls.out)["artifacts"];
  ASSERT_EQ(listed.size(), 1u) << ls.out;
  EXPECT_EQ(listed[0]["name"], "public");
  EXPECT_EQ(listed[0]["size"], 13);
}

}  // namespace
}  // namespace starling::itest
