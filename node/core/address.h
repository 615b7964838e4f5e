// "host:port" addresses as flags and the wire carry them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "starling/status.h"

namespace starling::node {

struct HostPort {
  std::string host;  // IPv4 dotted, IPv6 without brackets, or a hostname
  uint16_t port = 0;
};

// The gossip port a seed without one is on, as with Serf (and the default --bind).
inline constexpr uint16_t kDefaultGossipPort = 7946;

// Accepts "host:port" and "[v6]:port". kInvalidArgument names the input.
Result<HostPort> ParseHostPort(std::string_view text);

// Serf's habit for seeds: "host", "[v6]" and a bare "v6" address get `port`;
// anything else is returned as it is (for ParseHostPort to judge).
std::string WithDefaultPort(std::string_view addr, uint16_t port = kDefaultGossipPort);

// Inverse of ParseHostPort: brackets hosts that contain ':'.
std::string FormatHostPort(std::string_view host, uint16_t port);

// True for 0.0.0.0, :: and the empty host: a bind address that cannot be
// advertised to peers.
bool IsUnspecifiedHost(std::string_view host);

// True for 127.0.0.0/8 (dotted), ::1 and "localhost": a host only this
// machine reaches.
bool IsLoopbackHost(std::string_view host);

// The host of an HTTP Host header ("h", "h:port", "[v6]" or "[v6]:port").
std::string_view HostOfHostHeader(std::string_view header);

}  // namespace starling::node
