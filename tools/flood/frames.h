// Gossip frames built by hand, for tools and tests that must send what a
// daemon would never send: foreign versions and clusters, cut-short or
// oversized packets. Built with the schema directly, not the codec, so they
// do not inherit the codec's own limits.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace starling::frames {

using Bytes = std::vector<uint8_t>;

// A packet of `pings` pings from "flood" to "nobody" (or `target`).
Bytes PingPacket(size_t pings = 1, const std::string& target = "nobody");
// An envelope of any version and cluster around any payload.
Bytes Envelope(uint16_t version, const std::string& cluster, const Bytes& payload);
// This machine's wall clock as a sealed frame carries it.
inline int64_t WallMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace starling::frames
