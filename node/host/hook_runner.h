// Runs the hooks an operator installed in a node's hooks directory.
//
// The desired state names hooks; it never carries a command line. A name is
// one path component of [A-Za-z0-9._-] (not "." or ".."), resolved inside
// the hooks directory to a regular, executable file. Each run is a child
// process in its own process group with:
//   * a clean environment: PATH=/usr/local/bin:/usr/bin:/bin, the
//     caller's variables (STARLING_* by convention, documented with each
//     hook kind) and nothing inherited from the daemon;
//   * stdin from the request (or /dev/null), stdout and stderr captured
//     together, the last `tail_bytes` kept;
//   * a timeout, after which the whole group gets SIGTERM and, `kill_grace`
//     later, SIGKILL. A hook that exits in time may leave processes it
//     started running (a service); their output is no longer collected.
// Run() blocks: the daemon calls it from a worker thread, never from the
// protocol thread.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "hook.h"
#include "starling/status.h"

namespace starling::node {

class HookRunner {
 public:
  explicit HookRunner(std::string hooks_dir, size_t tail_bytes = 4096,
                      Duration kill_grace = std::chrono::seconds(2));

  // The executable a hook name stands for; kInvalidArgument for a bad name,
  // kNotFound when there is no such executable file; kInvalidArgument when
  // it, or the hooks dir, is not trusted (see FollowSymlinksOut).
  Result<std::string> Resolve(const std::string& name) const;
  // Runs the hook to completion (or its timeout). kInvalidArgument or
  // kNotFound as Resolve; kIoError when it cannot be started.
  Result<HookResult> Run(const HookRequest& request) const;

  const std::string& dir() const { return dir_; }

  // A hook that is a symlink runs only when its target is inside the hooks
  // dir, unless this is set (--hooks-follow-symlinks). Either way the target
  // must be trusted: owned by the daemon's user or root, written by no one
  // else, and so must the hooks dir (trust.h).
  void FollowSymlinksOut(bool follow) { follow_symlinks_ = follow; }

  // poll(2) as the runner calls it; tests put in one that fails.
  using PollFn = int (*)(pollfd* fds, nfds_t nfds, int timeout_ms);
  void SetPollForTesting(PollFn poll) { poll_ = poll; }

 private:
  using SteadyClock = std::chrono::steady_clock;
  struct Child {
    pid_t pid;
    int out;  // the read end of its stdout+stderr
    int in;   // the write end of its stdin
  };
  // Forks and execs `path` with `env` in its own process group, in the hooks dir.
  Result<Child> Spawn(const std::string& path, std::vector<std::string>& env) const;
  // Feeds stdin, collects the output tail, enforces the timeout, reaps.
  HookResult Supervise(Child& child, const HookRequest& request, SteadyClock::time_point started) const;

  std::string dir_;
  size_t tail_bytes_;
  Duration kill_grace_;
  PollFn poll_;
  bool follow_symlinks_ = false;
};

}  // namespace starling::node
