// What this machine's network interfaces say.
#pragma once

#include <string>

namespace starling::node {

// The host to advertise when bound to an unspecified address: the first
// up, non-loopback IPv4 interface address, or 127.0.0.1 when there is none.
// Multi-homed machines should pass --advertise explicitly.
std::string DefaultAdvertiseHost();

}  // namespace starling::node
