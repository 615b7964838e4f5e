#include "address.h"

#include <algorithm>
#include <charconv>

namespace starling::node {

Result<HostPort> ParseHostPort(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("address '" + std::string(text) + "' " + std::string(why) +
                                   " (expected host:port)");
  };
  HostPort out;
  std::string_view port_text;
  if (text.starts_with('[')) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad("has an unterminated [ipv6] host or no port");
    }
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("has no port");
    out.host = std::string(text.substr(0, colon));
    if (out.host.find(':') != std::string::npos) return bad("has an IPv6 host without [brackets]");
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return bad("has an invalid port");
  }
  out.port = static_cast<uint16_t>(port);
  return out;
}

std::string WithDefaultPort(std::string_view addr, uint16_t port) {
  if (addr.empty()) return std::string(addr);
  if (addr.front() == '[')
    return addr.back() == ']' ? FormatHostPort(addr.substr(1, addr.size() - 2), port) : std::string(addr);
  const auto colons = std::count(addr.begin(), addr.end(), ':');
  return colons == 1 ? std::string(addr) : FormatHostPort(addr, port);
}

std::string FormatHostPort(std::string_view host, uint16_t port) {
  std::string out;
  if (host.find(':') != std::string_view::npos) {
    out = "[" + std::string(host) + "]";
  } else {
    out = std::string(host);
  }
  return out + ":" + std::to_string(port);
}

bool IsUnspecifiedHost(std::string_view host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "0:0:0:0:0:0:0:0";
}

bool IsLoopbackHost(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1") return true;
  // 127.a.b.c, each of a, b, c a decimal byte.
  if (host.substr(0, 4) != "127.") return false;
  int parts = 1, digits = 0, value = 0;
  for (char c : host.substr(4)) {
    if (c == '.') {
      if (digits == 0) return false;
      ++parts;
      digits = value = 0;
    } else if (c >= '0' && c <= '9' && digits < 3) {
      value = value * 10 + (c - '0');
      if (++digits > 1 && value < 10) return false;  // no leading zeros
      if (value > 255) return false;
    } else {
      return false;
    }
  }
  return parts == 3 && digits > 0;
}

std::string_view HostOfHostHeader(std::string_view header) {
  if (!header.empty() && header.front() == '[') {
    const size_t end = header.find(']');
    return end == std::string_view::npos ? header : header.substr(1, end - 1);
  }
  return header.substr(0, header.find(':'));
}

}  // namespace starling::node
