#include "hook_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <optional>
#include <thread>
#include <vector>

#include "starling/text.h"
#include "trust.h"

namespace starling::node {

namespace {

// How long one wait for the pipes lasts; also the pace of the timeout checks.
constexpr int kPollMillis = 20;
// After the hook exits, how long its output pipe is still read (something it
// started in the background may hold the pipe open).
constexpr auto kDrainAfterExit = std::chrono::milliseconds(200);

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 128 || name == "." || name == "..") return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool ValidEnvKey(const std::string& key) {
  if (key.empty()) return false;
  for (char c : key)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return !(key[0] >= '0' && key[0] <= '9');
}

// Keeps a byte more than `keep`, so that the final cut (TailChars) sees that
// something was cut and says so.
void AppendTail(std::string& out, const char* data, size_t n, size_t keep) {
  out.append(data, n);
  if (out.size() > 2 * keep + 1) out.erase(0, out.size() - keep - 1);
}

}  // namespace

HookRunner::HookRunner(std::string hooks_dir, size_t tail_bytes, Duration kill_grace)
    : dir_(std::move(hooks_dir)), tail_bytes_(tail_bytes), kill_grace_(kill_grace), poll_(&::poll) {}

Result<std::string> HookRunner::Resolve(const std::string& name) const {
  if (!ValidName(name))
    return Status::InvalidArgument("hook name '" + name +
                                   "' is not one file name of letters, digits, '.', '_' or '-'");
  if (dir_.empty()) return Status::NotFound("hook '" + name + "': no hooks directory configured (--hooks-dir)");
  const std::string what = "hook '" + name + "'";
  std::string path = dir_ + "/" + name;
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return Status::NotFound(what + ": " + path + ": " + std::strerror(errno));
  if (S_ISLNK(st.st_mode)) {
    // What runs is the file the link names, checked as any hook; and only
    // inside the hooks dir unless the operator said otherwise.
    std::unique_ptr<char, decltype(&free)> real(realpath(path.c_str(), nullptr), &free);
    if (!real) return Status::NotFound(what + ": " + path + " is a symlink to nothing: " + std::strerror(errno));
    std::unique_ptr<char, decltype(&free)> dir(realpath(dir_.c_str(), nullptr), &free);
    const std::string inside = dir ? std::string(dir.get()) + "/" : std::string();
    if (!follow_symlinks_ && (inside.empty() || std::string_view(real.get()).substr(0, inside.size()) != inside))
      return Status::InvalidArgument(what + ": " + path + " is a symlink to " + real.get() +
                                     ", outside the hooks dir; move the hook in, or start with --hooks-follow-symlinks");
    path = real.get();
    if (stat(path.c_str(), &st) != 0) return Status::NotFound(what + ": " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status::NotFound(what + ": " + path + " is not a regular file");
  if (access(path.c_str(), X_OK) != 0) return Status::NotFound(what + ": " + path + " is not executable");
  if (Status s = CheckTrusted(dir_, "hooks dir"); !s.ok()) return Status::InvalidArgument(s.message());
  if (Status s = CheckTrusted(path, what); !s.ok()) return Status::InvalidArgument(s.message());
  return path;
}

Result<HookResult> HookRunner::Run(const HookRequest& request) const {
  auto path = Resolve(request.name);
  if (!path.ok()) return path.status();
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
  for (const auto& [k, v] : request.env) {
    if (!ValidEnvKey(k)) return Status::InvalidArgument("hook environment variable name '" + k + "' is not valid");
    if (v.find('\0') != std::string::npos)
      return Status::InvalidArgument("hook environment variable " + k + " holds a NUL byte");
    env.push_back(k + "=" + v);
  }
  const auto started = SteadyClock::now();
  Result<Child> child = Spawn(*path, env);
  if (!child.ok()) return child.status();
  HookResult result = Supervise(*child, request, started);
  result.took = std::chrono::duration_cast<Duration>(SteadyClock::now() - started);
  return result;
}

Result<HookRunner::Child> HookRunner::Spawn(const std::string& path, std::vector<std::string>& env) const {
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string exe = path;
  char* argv[] = {exe.data(), nullptr};

  int out[2], in[2];
  if (pipe2(out, O_CLOEXEC) != 0) return Status::IoError(std::string("pipe: ") + std::strerror(errno));
  if (pipe2(in, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return Status::IoError(std::string("pipe: ") + std::strerror(errno));
  }
  pid_t pid = fork();
  if (pid < 0) {
    for (int fd : {out[0], out[1], in[0], in[1]}) close(fd);
    return Status::IoError(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // A session of its own (and so a group: kill(-pid) ends it all): what a
    // start hook leaves running outlives the daemon, its restarts and its
    // upgrades, and gets no signal meant for the daemon's terminal.
    if (setsid() < 0) setpgid(0, 0);
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    // Nothing of the daemon's but stdio: a service the hook leaves running
    // would otherwise hold the daemon's sockets (and its ports) for ever.
    syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
    if (chdir(dir_.c_str()) != 0) _exit(126);
    umask(StartingUmask());
    // Default dispositions: the daemon's ignored signals must not leak in.
    signal(SIGPIPE, SIG_DFL);
    execve(argv[0], argv, envp.data());
    _exit(127);
  }
  close(out[1]);
  close(in[0]);
  // Feed stdin without blocking on a hook that never reads it.
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  return Child{pid, out[0], in[1]};
}

// Until the child has exited and its output is drained, every turn: the
// timeout (SIGTERM to the group, SIGKILL `kill_grace_` later), a WNOHANG
// reap, then a short poll of the pipes. The timeout must hold whatever the
// pipes do: when poll() itself fails the pipes are given up (the output is
// what was read so far) and the loop goes on at the same pace without them,
// so a hook that never ends is still killed at its deadline.
HookResult HookRunner::Supervise(Child& child, const HookRequest& request, SteadyClock::time_point started) const {
  const pid_t pid = child.pid;
  size_t fed = 0;
  int in_fd = child.in;
  if (request.input.empty()) {
    close(in_fd);
    in_fd = -1;
  }
  HookResult result;
  const auto deadline = started + request.timeout;
  std::optional<SteadyClock::time_point> kill_at, drain_until;
  int status = 0;
  bool exited = false, out_open = true, lost_status = false;
  char buf[8192];
  while (!exited || out_open) {
    const auto now = SteadyClock::now();
    if (!exited && !result.timed_out && now >= deadline) {
      result.timed_out = true;
      kill(-pid, SIGTERM);
      kill_at = now + kill_grace_;
    }
    if (kill_at && now >= *kill_at) {
      kill(-pid, SIGKILL);
      kill_at.reset();
    }
    if (!exited) {
      const pid_t w = waitpid(pid, &status, WNOHANG);
      // ECHILD: reaped elsewhere (SIGCHLD ignored); its status is lost.
      if (w == pid) exited = true;
      if (w < 0 && errno == ECHILD) exited = lost_status = true;
    }
    if (exited && !drain_until) {
      // Something the hook started in the background may hold the pipe
      // open: read what is there, then stop.
      drain_until = now + kDrainAfterExit;
    }
    if (exited && drain_until && now >= *drain_until) out_open = false;
    if (exited && !out_open) break;
    pollfd fds[2];
    nfds_t nfds = 0;
    if (out_open) fds[nfds++] = {child.out, POLLIN, 0};
    if (in_fd >= 0) fds[nfds++] = {in_fd, POLLOUT, 0};
    // Short waits: the child's exit is noticed by polling waitpid.
    int r = nfds > 0 ? poll_(fds, nfds, kPollMillis) : 0;
    if (r < 0 && errno != EINTR) {
      result.output += "\n[starlingd: poll failed (" + std::string(std::strerror(errno)) +
                       "); the rest of the hook's output is not collected]\n";
      out_open = false;
      if (in_fd >= 0) close(in_fd);
      in_fd = -1;
      nfds = 0;
    }
    if (nfds == 0) std::this_thread::sleep_for(std::chrono::milliseconds(kPollMillis));
    for (nfds_t k = 0; k < nfds && r > 0; ++k) {
      if (fds[k].fd == child.out && (fds[k].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = read(child.out, buf, sizeof buf);
        if (n > 0) {
          AppendTail(result.output, buf, static_cast<size_t>(n), tail_bytes_);
        } else if (n == 0 || errno != EINTR) {
          out_open = false;
        }
      } else if (fds[k].fd == in_fd && (fds[k].revents & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = write(in_fd, request.input.data() + fed, request.input.size() - fed);
        if (n > 0) fed += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR) fed = request.input.size();
        if (fed >= request.input.size()) {
          close(in_fd);
          in_fd = -1;
        }
      }
    }
  }
  if (in_fd >= 0) close(in_fd);
  close(child.out);
  // A hook that timed out takes its whole group with it; one that finished
  // may leave background processes (a service it started) running.
  if (result.timed_out) kill(-pid, SIGKILL);
  // What a hook prints is shown to operators and sent to peers in reports:
  // cut where a character starts and made printable here, once.
  result.output = text::Printable(text::TailChars(result.output, tail_bytes_));
  if (!lost_status && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (!lost_status && WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

}  // namespace starling::node
