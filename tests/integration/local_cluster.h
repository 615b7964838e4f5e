// LocalCluster: real starlingd processes on 127.0.0.1 for integration tests.
//
// Every daemon runs with --profile local, binds 127.0.0.1:0 (a free port)
// unless told otherwise, and keeps its data dir, API socket and log under one
// short mkdtemp directory (Unix socket paths must stay under 108 bytes). Each
// daemon's stdout and stderr go to its own log file; the destructor kills
// every process it started (by PID) and prints the logs when the test failed.
// Conditions are polled against a deadline, never slept on.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace starling::itest {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

struct CommandResult {
  int exit_code = -1;  // -N: killed by signal N; kTimedOut: killed at the deadline
  std::string out;
  std::string err;
  static constexpr int kTimedOut = -1000;
};

// Runs argv[0] (a path) with the given arguments, capturing its output.
CommandResult RunCommand(const std::vector<std::string>& argv, Millis timeout = 20s);

class LocalCluster;
// Writes `text` to `name` under the cluster's root directory; its path.
std::string WriteFile(const LocalCluster& c, const std::string& name, const std::string& text);

// Polls `condition` every `interval` until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, Millis timeout, Millis interval = 200ms);

// A directory that is removed at destruction unless the test failed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class LocalCluster {
 public:
  struct Node {
    std::string name;
    std::string dir;     // data dir
    std::string socket;  // API socket
    std::string log;     // captured stdout + stderr
    std::string bind;
    std::vector<std::string> extra_args;
    std::string binary;  // the starlingd it runs
    pid_t pid = -1;    // -1 once reaped
    std::string addr;  // the advertised address, from `starling info`
  };

  explicit LocalCluster(std::string cluster = "itest");
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // The starlingd binary the next Launch runs (default: this build's).
  void SetBinary(std::string path) { binary_ = std::move(path); }
  // Node i runs `path` from its next Restart on.
  void UseBinary(int i, std::string path) { nodes_.at(i).binary = std::move(path); }

  // Launches a daemon and returns its index; does not wait for it.
  int Launch(const std::string& name, std::vector<std::string> extra_args = {},
             const std::string& bind = "127.0.0.1:0");
  // Launches and waits until it answers `starling info`; -1 (and a gtest
  // failure with its log) if it does not within `timeout`.
  int Start(const std::string& name, std::vector<std::string> extra_args = {}, Millis timeout = 10s);
  // Waits for node i to answer and records its address.
  bool WaitReady(int i, Millis timeout = 10s);

  void Signal(int i, int signo);
  // SIGKILLs node i and reaps it.
  void Kill(int i);
  // Waits for node i to exit; its exit code, -N for signal N, nullopt on timeout.
  std::optional<int> WaitExit(int i, Millis timeout);
  // Relaunches node i on its data dir and its previous address, with the
  // given extra arguments (by default none: no --join), and waits for it.
  bool Restart(int i, std::vector<std::string> extra_args = {}, Millis timeout = 10s);

  // `starling --socket <node i's socket> args...`
  CommandResult Cli(int i, std::vector<std::string> args, Millis timeout = 20s) const;
  std::optional<nlohmann::json> Members(int i) const;
  std::optional<nlohmann::json> Info(int i) const;

  // Empty when every node in `observers` lists exactly the members in
  // `expected` (name -> status); otherwise what the first mismatch was.
  std::string ViewMismatch(const std::vector<int>& observers,
                           const std::map<std::string, std::string>& expected) const;
  // Polls ViewMismatch; returns "" on success or the last mismatch.
  std::string AwaitView(const std::vector<int>& observers, const std::map<std::string, std::string>& expected,
                        Millis timeout);

  // name -> "alive" for every node started.
  std::map<std::string, std::string> AllAlive() const;
  // Starts "node0" and n-1 nodes joining through it ("node1", ...); true
  // once every node lists every other alive (gtest failures otherwise).
  // `extra_args` go to every node.
  bool StartConverged(int n, Millis timeout = 30s, std::vector<std::string> extra_args = {});

  const Node& node(int i) const { return nodes_.at(i); }
  size_t size() const { return nodes_.size(); }
  const std::string& root() const { return root_.path(); }
  std::vector<int> All() const;
  std::vector<int> AllExcept(int i) const;
  std::string LogOf(int i, size_t max_lines = 200) const;

 private:
  pid_t Spawn(const Node& n) const;

  std::string cluster_;
  std::string binary_;
  TempDir root_;
  std::vector<Node> nodes_;
};

}  // namespace starling::itest
