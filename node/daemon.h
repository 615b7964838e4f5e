// starlingd's main loop: wires the store, the Asio transports, the
// Memberlist and the local API together (DESIGN.md sections 2 and 6).
#pragma once

#include "flags.h"

namespace starling::node {

// Runs the daemon until it leaves the cluster or fails, and returns the
// process exit code:
//   0  left gracefully (SIGINT/SIGTERM, or `starling leave`)
//   1  could not start (the message on stderr names the data dir, address or
//      socket at fault), the cluster refused our name, or a second signal
//      cut a graceful leave short.
int RunDaemon(const DaemonOptions& options);

}  // namespace starling::node
