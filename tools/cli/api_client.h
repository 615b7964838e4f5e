// One request/reply exchange with the local starlingd over its Unix socket
// (framing per schema/api.capnp).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "starling/status.h"

namespace starling::cli {

// Sends `request` and returns the reply bytes (8-byte aligned, whole Cap'n
// Proto words). kUnavailable when the daemon cannot be reached or does not
// answer within `timeout`; the message says which and how to fix it.
Result<std::vector<uint64_t>> Exchange(const std::string& socket_path, const std::vector<uint8_t>& request,
                                       std::chrono::milliseconds timeout);

}  // namespace starling::cli
