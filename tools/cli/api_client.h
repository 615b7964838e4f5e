// One request/reply exchange with the local starlingd over its Unix socket
// (framing per schema/api.capnp).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "starling/status.h"

namespace starling::cli {

// The daemon to talk to. Before anything is sent, the process serving
// `socket` must run as root, as the caller or as the `starling` system user
// the Debian package runs starlingd as (SO_PEERCRED), or as `owner` (a user
// name or uid) when given: a socket another user put in its place would
// otherwise be handed keys and documents, and its answers believed.
struct Daemon {
  std::string socket;
  std::string owner;
};

// Sends `request` and returns the reply bytes (8-byte aligned, whole Cap'n
// Proto words). kUnavailable when the daemon cannot be reached or does not
// answer within `timeout`; the message says which and how to fix it.
// `pass_fd`, when not -1, is an open file handed to the daemon with the
// request (SCM_RIGHTS).
Result<std::vector<uint64_t>> Exchange(const Daemon& daemon, const std::vector<uint8_t>& request,
                                       std::chrono::milliseconds timeout, int pass_fd = -1);

// Sends `request` and hands every reply frame to `on_frame` until the daemon
// hangs up (OK) or `on_frame` returns false. `timeout` bounds the connect
// and the first frame only.
Status Stream(const Daemon& daemon, const std::vector<uint8_t>& request,
              std::chrono::milliseconds timeout, const std::function<bool(std::vector<uint64_t>)>& on_frame);

}  // namespace starling::cli
