// What the benchmarks share: starting daemons by PID and killing every one
// of them on the way out (also on SIGINT/SIGTERM), one exchange with a
// starlingd over its API socket, polling with a bound, percentiles, and the
// kernel's figures for a process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "schema/api.capnp.h"

namespace starling::bench {

// Forks and execs `args` with stdout and stderr to `log_path`. The child
// dies with the benchmark (PR_SET_PDEATHSIG) and is remembered so that
// KillAll() reaches it. Returns -1 when fork fails.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log_path);

// SIGKILLs and reaps `pid` (no-op for -1) and forgets it.
void Kill(pid_t pid);
// Reaps `pid` if it has exited on its own; true when it has.
bool Reaped(pid_t pid);
// Every process Spawn() started and that is still remembered.
void KillAll();
// SIGINT / SIGTERM kill every spawned process, then exit 130.
void KillAllOnSignals();

// One API exchange with a starlingd; `use` reads the reply. False when the
// daemon cannot be reached or answered with an error (printed to stderr
// unless `quiet`).
bool Call(const std::string& socket, const std::function<void(api::Request::Builder)>& build,
          const std::function<void(api::Reply::Reader)>& use, bool quiet = false);

// A small desired-state document, different for every k.
std::string BenchDocument(int k);
// Applies BenchDocument(k) through the daemon at `socket`; the revision it
// made, or nullopt.
std::optional<std::string> ApplyDocument(const std::string& socket, int k);
// The daemon's current desired-state revision, or nullopt when it does not answer.
std::optional<std::string> Revision(const std::string& socket);
// Polls every socket's revision about every 0.5 ms until all report
// `revision` or `timeout` passes; how many did.
int AwaitRevision(const std::vector<std::string>& sockets, const std::string& revision,
                  std::chrono::milliseconds timeout);

// Polls `cond` every `every` until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
               std::chrono::milliseconds every = std::chrono::milliseconds(20));

// Nearest-rank percentile (p in 0..100) of `v`; 0 for an empty set.
double Percentile(std::vector<double> v, double p);
inline double Median(std::vector<double> v) { return Percentile(std::move(v), 50); }

struct ProcFigures {
  double rss_mb = 0;        // VmRSS: every resident page, shared library text included
  double anon_mb = 0;       // RssAnon: heap, stacks and other private memory
  double pss_mb = 0;        // Pss: shared pages split among the processes mapping them
  double cpu_seconds = 0;   // user + system since the process started
};
std::optional<ProcFigures> ReadProc(pid_t pid);

// `count` distinct ports on 127.0.0.1 below the ephemeral range, each free
// for both UDP and TCP at the moment of asking; empty on failure.
std::vector<int> FreePorts(int count);

}  // namespace starling::bench
