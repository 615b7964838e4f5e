#include "local_cluster.h"

#include <algorithm>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#ifndef STARLINGD_PATH
#error "STARLINGD_PATH must name the starlingd binary"
#endif
#ifndef STARLING_CLI_PATH
#error "STARLING_CLI_PATH must name the starling binary"
#endif

namespace starling::itest {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<char*> Argv(const std::vector<std::string>& args) {
  std::vector<char*> out;
  for (const std::string& a : args) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

int DecodeWait(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

// Daemons started by a test must not outlive it, even when it crashes.
void DieWithParent() { prctl(PR_SET_PDEATHSIG, SIGKILL); }

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, Millis timeout) {
  CommandResult result;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  std::vector<char*> args = Argv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    DieWithParent();
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    int n = poll(fds, 2, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    for (int k = 0; k < 2; ++k) {
      if (fds[k].fd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t r = read(fds[k].fd, buf, sizeof(buf));
      if (r > 0) {
        (k == 0 ? result.out : result.err).append(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        close(fds[k].fd);
        fds[k].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = timed_out ? CommandResult::kTimedOut : DecodeWait(status);
  return result;
}

bool WaitFor(const std::function<bool()>& condition, Millis timeout, Millis interval) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

TempDir::TempDir() {
  // Short on purpose: socket paths live under it.
  char tmpl[] = "/tmp/stl-XXXXXX";
  char* made = mkdtemp(tmpl);
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return;
  }
  path_ = made;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  if (::testing::Test::HasFailure()) {
    std::fprintf(stderr, "keeping %s for inspection\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

LocalCluster::LocalCluster(std::string cluster) : cluster_(std::move(cluster)) {}

LocalCluster::~LocalCluster() {
  for (Node& n : nodes_) {
    if (n.pid > 0) {
      kill(n.pid, SIGKILL);
      int status = 0;
      while (waitpid(n.pid, &status, 0) < 0 && errno == EINTR) {
      }
      n.pid = -1;
    }
  }
  if (::testing::Test::HasFailure()) {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      std::fprintf(stderr, "===== log of node %zu (%s): %s =====\n%s\n", i, nodes_[i].name.c_str(),
                   nodes_[i].log.c_str(), LogOf(static_cast<int>(i)).c_str());
    }
  }
}

pid_t LocalCluster::Spawn(const Node& n) const {
  std::vector<std::string> args = {n.binary,      "--name",    n.name,     "--bind",     n.bind,
                                   "--data-dir",   n.dir,       "--socket", n.socket,     "--profile",
                                   "local",        "--cluster", cluster_,   "--log-level"};
  const char* level = std::getenv("STARLING_ITEST_LOG_LEVEL");
  args.push_back(level != nullptr ? level : "debug");
  // HTTP on a free port unless the test asks for one: tests run side by side.
  if (std::find(n.extra_args.begin(), n.extra_args.end(), "--http") == n.extra_args.end())
    args.insert(args.end(), {"--http", "127.0.0.1:0"});
  args.insert(args.end(), n.extra_args.begin(), n.extra_args.end());
  std::vector<char*> argv = Argv(args);
  int log_fd = open(n.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    ADD_FAILURE() << "cannot open " << n.log << ": " << std::strerror(errno);
    return -1;
  }
  std::string banner = "----- launching";
  for (const std::string& a : args) banner += " " + a;
  banner += "\n";
  (void)!write(log_fd, banner.data(), banner.size());
  pid_t pid = fork();
  if (pid == 0) {
    DieWithParent();
    int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  if (pid < 0) ADD_FAILURE() << "fork: " << std::strerror(errno);
  return pid;
}

int LocalCluster::Launch(const std::string& name, std::vector<std::string> extra_args,
                         const std::string& bind) {
  Node n;
  std::string label = "n" + std::to_string(nodes_.size());
  n.name = name;
  n.dir = root() + "/" + label;
  n.socket = n.dir + "/api.sock";
  n.log = root() + "/" + label + ".log";
  n.bind = bind;
  n.binary = binary_.empty() ? STARLINGD_PATH : binary_;
  n.extra_args = std::move(extra_args);
  n.pid = Spawn(n);
  nodes_.push_back(std::move(n));
  return static_cast<int>(nodes_.size()) - 1;
}

int LocalCluster::Start(const std::string& name, std::vector<std::string> extra_args, Millis timeout) {
  int i = Launch(name, std::move(extra_args));
  if (!WaitReady(i, timeout)) return -1;
  return i;
}

bool LocalCluster::WaitReady(int i, Millis timeout) {
  Node& n = nodes_.at(i);
  std::optional<std::string> addr;
  bool exited = false;
  bool ok = WaitFor(
      [&] {
        int status = 0;
        if (n.pid > 0 && waitpid(n.pid, &status, WNOHANG) == n.pid) {
          n.pid = -1;
          exited = true;
          return true;
        }
        std::optional<nlohmann::json> info = Info(i);
        if (!info || !info->contains("addr")) return false;
        addr = (*info)["addr"].get<std::string>();
        return true;
      },
      timeout, 100ms);
  if (!ok || exited || !addr) {
    ADD_FAILURE() << "node " << i << " (" << n.name << ") " << (exited ? "exited" : "did not answer in time")
                  << "; log:\n"
                  << LogOf(i);
    return false;
  }
  n.addr = *addr;
  return true;
}

void LocalCluster::Signal(int i, int signo) {
  if (nodes_.at(i).pid > 0) kill(nodes_[i].pid, signo);
}

void LocalCluster::Kill(int i) {
  Node& n = nodes_.at(i);
  if (n.pid <= 0) return;
  kill(n.pid, SIGKILL);
  int status = 0;
  while (waitpid(n.pid, &status, 0) < 0 && errno == EINTR) {
  }
  n.pid = -1;
}

std::optional<int> LocalCluster::WaitExit(int i, Millis timeout) {
  Node& n = nodes_.at(i);
  if (n.pid <= 0) return std::nullopt;
  std::optional<int> code;
  WaitFor(
      [&] {
        int status = 0;
        if (waitpid(n.pid, &status, WNOHANG) != n.pid) return false;
        code = DecodeWait(status);
        n.pid = -1;
        return true;
      },
      timeout, 50ms);
  return code;
}

bool LocalCluster::Restart(int i, std::vector<std::string> extra_args, Millis timeout) {
  Node& n = nodes_.at(i);
  if (n.pid > 0) {
    ADD_FAILURE() << "node " << i << " is still running";
    return false;
  }
  // Its old address: peers (and its persisted member list) point there.
  if (!n.addr.empty()) n.bind = n.addr;
  n.extra_args = std::move(extra_args);
  n.pid = Spawn(n);
  return WaitReady(i, timeout);
}

std::map<std::string, std::string> LocalCluster::AllAlive() const {
  std::map<std::string, std::string> out;
  for (const Node& n : nodes_) out[n.name] = "alive";
  return out;
}

bool LocalCluster::StartConverged(int n, Millis timeout, std::vector<std::string> extra_args) {
  if (Start("node0", extra_args) != 0) return false;
  std::vector<int> joiners;
  for (int i = 1; i < n; ++i) {
    std::vector<std::string> args = extra_args;
    args.insert(args.end(), {"--join", nodes_[0].addr});
    joiners.push_back(Launch("node" + std::to_string(i), args));
  }
  for (int i : joiners)
    if (!WaitReady(i)) return false;
  std::string mismatch = AwaitView(All(), AllAlive(), timeout);
  EXPECT_EQ(mismatch, "") << "the cluster did not converge";
  return mismatch.empty();
}

CommandResult LocalCluster::Cli(int i, std::vector<std::string> args, Millis timeout) const {
  std::vector<std::string> argv = {STARLING_CLI_PATH, "--socket", nodes_.at(i).socket};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, timeout);
}

// A read command's --format json output, or nullopt if it failed or is not
// the expected kind of JSON value.
static std::optional<nlohmann::json> CliJson(const LocalCluster& c, int i, const std::string& command,
                                             nlohmann::json::value_t kind) {
  CommandResult r = c.Cli(i, {command, "--format", "json"}, 5s);
  if (r.exit_code != 0) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  if (j.type() != kind) return std::nullopt;
  return j;
}

std::optional<nlohmann::json> LocalCluster::Members(int i) const {
  return CliJson(*this, i, "members", nlohmann::json::value_t::array);
}

std::optional<nlohmann::json> LocalCluster::Info(int i) const {
  return CliJson(*this, i, "info", nlohmann::json::value_t::object);
}

std::string LocalCluster::ViewMismatch(const std::vector<int>& observers,
                                       const std::map<std::string, std::string>& expected) const {
  for (int i : observers) {
    std::optional<nlohmann::json> members = Members(i);
    if (!members) return nodes_[i].name + ": `starling members` failed";
    std::map<std::string, std::string> seen;
    for (const auto& m : *members) seen[m.value("name", "?")] = m.value("status", "?");
    for (const auto& [name, status] : expected) {
      auto it = seen.find(name);
      if (it == seen.end()) return nodes_[i].name + " does not list " + name;
      if (it->second != status)
        return nodes_[i].name + " sees " + name + " " + it->second + ", want " + status;
    }
    if (seen.size() != expected.size()) {
      return nodes_[i].name + " lists " + std::to_string(seen.size()) + " members, want " +
             std::to_string(expected.size()) + ": " + members->dump();
    }
  }
  return "";
}

std::string LocalCluster::AwaitView(const std::vector<int>& observers,
                                    const std::map<std::string, std::string>& expected, Millis timeout) {
  std::string last;
  WaitFor(
      [&] {
        last = ViewMismatch(observers, expected);
        return last.empty();
      },
      timeout, 250ms);
  return last;
}

std::vector<int> LocalCluster::All() const {
  std::vector<int> out;
  for (size_t i = 0; i < nodes_.size(); ++i) out.push_back(static_cast<int>(i));
  return out;
}

std::vector<int> LocalCluster::AllExcept(int i) const {
  std::vector<int> out;
  for (int k : All()) {
    if (k != i) out.push_back(k);
  }
  return out;
}

std::string LocalCluster::LogOf(int i, size_t max_lines) const {
  std::ifstream in(nodes_.at(i).log);
  std::deque<std::string> lines;
  std::string line;
  size_t dropped = 0;
  while (std::getline(in, line)) {
    lines.push_back(std::move(line));
    if (lines.size() > max_lines) {
      lines.pop_front();
      ++dropped;
    }
  }
  std::ostringstream out;
  if (dropped > 0) out << "(" << dropped << " earlier lines omitted)\n";
  for (const std::string& l : lines) out << l << "\n";
  return out.str();
}

std::string WriteFile(const LocalCluster& c, const std::string& name, const std::string& text) {
  std::string path = c.root() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace starling::itest
