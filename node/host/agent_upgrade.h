// The starlingd binary this node runs, and moving it to another one in
// place: the host half of `starling agent upgrade` (core's AgentBinary).
//
// A move, on a worker thread:
//   1. the new binary's digest is checked, and it is copied beside the
//      running one as `<exe>.next` (0755);
//   2. `<exe>.next --version` must name the release the desired state says,
//      and `<exe>.next --data-dir D --check-data-dir` must exit 0 (it can run
//      on this data dir, migrating it if need be);
//   3. the running binary is kept as `<exe>.previous` (a hard link), and
//      `<exe>.next` is renamed over `<exe>` (atomic);
//   4. `<data-dir>/agent-upgrade` records the move, and a sentinel (the
//      previous binary, `--agent-sentinel`, in a session of its own) watches
//      the process; then the daemon stops without leaving the cluster and
//      execs `<exe>` with the same arguments (or exits kExitRestart for its
//      service manager with --supervised). Same pid, identity and data dir.
// The new daemon removes the record once it serves. Should it exit or not
// serve within the deadline instead, the sentinel puts `<exe>.previous`
// back, says why in `<data-dir>/agent-upgrade-failed`, and starts it with
// the same arguments (or leaves that to the service manager).
// Services started by hooks are in sessions of their own: none is stopped.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "agent.h"
#include "worker.h"

namespace starling::node {

// RunDaemon's exit code when it stopped to restart into a new binary.
inline constexpr int kExitRestart = 75;

class AgentUpgrader final : public AgentBinary {
 public:
  struct Options {
    std::string exe;       // the running binary's path (/proc/self/exe at start)
    std::string data_dir;
    std::string version;   // the release running
    Duration deadline = std::chrono::seconds(60);  // for the new one to serve
    // Stops the daemon for the restart (on the protocol thread).
    std::function<void()> stop;
    // Takes the data dir down to an older binary's format (any thread).
    std::function<Status(uint32_t format)> step_down;
  };
  // `digest` of the running binary: hashed at start (on the caller's thread).
  AgentUpgrader(Options options, Worker::Post post);

  std::string version() const override { return opts_.version; }
  std::string digest() const override { return digest_; }
  std::string Kept(const std::string& digest) const override;
  std::string LastFailure() const override { return last_failure_; }
  void Restart(const std::string& path, const std::string& version, const std::string& digest,
               std::function<void(Status)> failed) override;

  // Called once the daemon serves: a move that brought it up took.
  void Served();
  const std::string& exe() const { return opts_.exe; }

 private:
  Options opts_;
  Worker worker_;
  std::string digest_, last_failure_;
  std::string previous_digest_;  // of <exe>.previous, hashed at start
};

// The running binary's own path (readlink /proc/self/exe).
Result<std::string> OwnExecutable();

// `starlingd --agent-sentinel RECORD`: watches a move (see above) and
// reverts it when the new binary does not serve. Returns the exit code.
// `ours`: the data dir format this (the previous) binary writes; a dir the
// new one migrated past it is restored from its backup.
int RunAgentSentinel(const std::string& record, uint32_t ours);

// `argv` for the restart and the binary's path, kept by main() at start
// (before any swap moves /proc/self/exe).
void KeepArguments(int argc, char** argv);
const std::vector<std::string>& KeptArguments();
const std::string& KeptExecutable();
// Sets `flag`'s value in the kept arguments (replacing "--flag V" or
// "--flag=V", else appending).
void KeepOption(const std::string& flag, const std::string& value);
// Replaces this process with KeptExecutable() and the kept arguments;
// returns only on failure.
void ExecKept();

}  // namespace starling::node
