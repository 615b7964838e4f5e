// starlingd's process: wires the data dir, the Asio transports, the
// Memberlist, the node's protocols (NodeCore) and the local API together.
#pragma once

#include "flags.h"

namespace starling::node {

// starlingd's exit codes.
inline constexpr int kExitOk = 0;      // left gracefully, or --help / --version
inline constexpr int kExitFailed = 1;  // could not start, refused by the cluster, or a leave cut short
inline constexpr int kExitUsage = 2;   // a bad flag or config file (the message names it)

// `--check-config`: what a start checks before it binds anything (the hooks
// dir, the event handlers, the data dir's format; the flags and files were
// checked when parsed), without starting. Prints the settings on stdout and
// returns kExitOk, or names what is wrong and returns kExitUsage (kExitFailed
// for a data dir this binary would refuse).
int CheckConfig(const DaemonOptions& options);

// Runs the daemon until it leaves the cluster or fails, and returns the
// process exit code:
//   0  left gracefully (SIGINT/SIGTERM, or `starling leave`)
//   1  could not start (the message on stderr names the data dir, address or
//      socket at fault), the cluster refused our name, or a second signal
//      cut a graceful leave short.
int RunDaemon(const DaemonOptions& options);

}  // namespace starling::node
