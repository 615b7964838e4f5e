// What a hook run is: the request the protocol makes and the result it gets
// back. The protocol never runs a process itself; it hands requests to a
// HookExec, which the host implements with child processes on a worker
// thread (host/hook_runner.h) and the simulator with scripted results.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>

#include "starling/env.h"
#include "starling/status.h"

namespace starling::node {

struct HookRequest {
  std::string name;
  std::map<std::string, std::string> env;
  std::string input;  // written to the hook's stdin
  Duration timeout = std::chrono::seconds(60);
};

struct HookResult {
  int exit_code = -1;      // the exit status when it exited
  int signal = 0;          // the signal that ended it, if any
  bool timed_out = false;  // killed at the timeout
  std::string output;      // the tail of stdout+stderr
  Duration took{0};
  bool ok() const { return !timed_out && signal == 0 && exit_code == 0; }
  // "exit 0", "exit 3", "killed by signal 9", "timed out after 5 s".
  std::string Describe() const;
};

class HookExec {
 public:
  virtual ~HookExec() = default;
  // Runs a hook; `done` is called later, on the protocol thread.
  virtual void Run(HookRequest request, std::function<void(Result<HookResult>)> done) = 0;
};

}  // namespace starling::node
