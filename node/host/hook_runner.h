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

#include <chrono>
#include <map>
#include <string>

#include "hook.h"
#include "starling/status.h"

namespace starling::node {

class HookRunner {
 public:
  explicit HookRunner(std::string hooks_dir, size_t tail_bytes = 4096,
                      Duration kill_grace = std::chrono::seconds(2));

  // The executable a hook name stands for; kInvalidArgument for a bad name,
  // kNotFound when there is no such executable file.
  Result<std::string> Resolve(const std::string& name) const;
  // Runs the hook to completion (or its timeout). kInvalidArgument or
  // kNotFound as Resolve; kIoError when it cannot be started.
  Result<HookResult> Run(const HookRequest& request) const;

  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  size_t tail_bytes_;
  Duration kill_grace_;
};

}  // namespace starling::node
