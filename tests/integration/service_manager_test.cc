// starlingd under a service manager: what it tells systemd through
// NOTIFY_SOCKET (sd_notify) and when, as a unit of Type=notify relies on.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>

#include "local_cluster.h"

namespace starling::itest {
namespace {

using testing::HasSubstr;

// A datagram socket standing in for systemd's notify socket.
class NotifyListener {
 public:
  explicit NotifyListener(std::string path) : path_(std::move(path)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  }
  ~NotifyListener() {
    close(fd_);
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

  // The next message, or nullopt when none came within `timeout`.
  std::optional<std::string> Next(Millis timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }
  // Messages until one holding `state` ("READY=1"); all of them, that one last.
  std::vector<std::string> Until(const std::string& state, Millis timeout) {
    std::vector<std::string> seen;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      std::optional<std::string> m = Next(left);
      if (!m) break;
      seen.push_back(*m);
      if (m->find(state) != std::string::npos) break;
    }
    return seen;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

bool Says(const std::vector<std::string>& messages, const std::string& state) {
  return !messages.empty() && messages.back().find(state) != std::string::npos;
}

// The daemons launched while it lives get NOTIFY_SOCKET, as under systemd.
class UnderNotify {
 public:
  explicit UnderNotify(const NotifyListener& l) { setenv("NOTIFY_SOCKET", l.path().c_str(), 1); }
  ~UnderNotify() { unsetenv("NOTIFY_SOCKET"); }
};

TEST(ServiceManager, ALoneFirstNodeIsReadyOnceItServesAndSaysStoppingWhenItLeaves) {
  LocalCluster c;
  NotifyListener systemd(c.root() + "/notify");
  int i;
  {
    UnderNotify env(systemd);
    i = c.Launch("alpha");
  }
  std::vector<std::string> got = systemd.Until("READY=1", 15s);
  ASSERT_TRUE(Says(got, "READY=1")) << c.LogOf(i);
  EXPECT_THAT(got.back(), HasSubstr("STATUS=serving as alpha in cluster itest"));
  // Ready means served: the API answers the moment READY=1 is out.
  CommandResult info = c.Cli(i, {"info", "--format", "json"});
  EXPECT_EQ(info.exit_code, 0) << info.err;

  c.Signal(i, SIGTERM);
  got = systemd.Until("STOPPING=1", 10s);
  ASSERT_TRUE(Says(got, "STOPPING=1")) << c.LogOf(i);
  EXPECT_THAT(got.back(), HasSubstr("STATUS=leaving the cluster"));
  EXPECT_EQ(c.WaitExit(i, 10s), 0);
}

TEST(ServiceManager, AJoiningNodeIsReadyOnlyOnceItHasJoined) {
  LocalCluster c;
  ASSERT_EQ(c.Start("alpha"), 0);
  NotifyListener systemd(c.root() + "/notify");
  int i;
  {
    UnderNotify env(systemd);
    i = c.Launch("beta", {"--join", c.node(0).addr});
  }
  std::vector<std::string> got = systemd.Until("READY=1", 15s);
  ASSERT_TRUE(Says(got, "READY=1")) << c.LogOf(i);
  EXPECT_THAT(got.front(), HasSubstr("STATUS=joining through 1 seed(s)"));
  // At READY=1 the node has joined: it lists its seed alive.
  std::optional<nlohmann::json> members = c.Members(i);
  ASSERT_TRUE(members);
  bool seed_alive = false;
  for (const auto& m : *members) seed_alive |= m["name"] == "alpha" && m["status"] == "alive";
  EXPECT_TRUE(seed_alive) << members->dump();
}

TEST(ServiceManager, ANodeWhoseSeedsNeverAnswerIsNeverReady) {
  LocalCluster c;
  NotifyListener systemd(c.root() + "/notify");
  int i;
  {
    UnderNotify env(systemd);
    // Nobody gossips on port 1: two attempts, then exit 1.
    i = c.Launch("gamma", {"--join", "127.0.0.1:1", "--retry-max", "2", "--retry-interval", "100ms"});
  }
  EXPECT_EQ(c.WaitExit(i, 20s), 1) << c.LogOf(i);
  // Everything it said is queued by now.
  std::vector<std::string> got;
  while (std::optional<std::string> m = systemd.Next(0ms)) got.push_back(*m);
  ASSERT_FALSE(got.empty());
  for (const std::string& m : got) EXPECT_THAT(m, testing::Not(HasSubstr("READY=1")));
}

// Started by hand with a NOTIFY_SOCKET nobody listens on, it runs as before
// (and says why it cannot notify).
TEST(ServiceManager, ANotifySocketNobodyListensOnOnlyCostsAWarning) {
  LocalCluster c;
  setenv("NOTIFY_SOCKET", (c.root() + "/nobody").c_str(), 1);
  const int i = c.Start("delta");
  unsetenv("NOTIFY_SOCKET");
  ASSERT_EQ(i, 0);
  EXPECT_TRUE(WaitFor([&] { return c.LogOf(i).find("cannot notify the service manager") != std::string::npos; }, 10s))
      << c.LogOf(i);
  EXPECT_TRUE(c.Info(i));
}

}  // namespace
}  // namespace starling::itest
