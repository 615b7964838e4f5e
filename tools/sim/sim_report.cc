#include "sim_report.h"

#include "starling/membership/user_channels.h"

namespace starling::sim {

TrafficByProtocol SentByProtocol(Cluster& c) {
  TrafficByProtocol out;
  Traffic& members = out["membership"];
  for (int i = 0; i < c.size(); ++i) {
    if (!c.up(i)) continue;
    const membership::Counters& k = c.node(i).counters();
    auto at = [&](const std::string& name) {
      auto it = k.find(name);
      return it == k.end() ? uint64_t{0} : it->second;
    };
    for (const auto& [name, value] : k)
      if (name.rfind("messages_sent.", 0) == 0) members.messages += value;
    members.bytes += at("bytes_sent");
    members.stream_bytes += at("stream_bytes_sent");
    for (size_t ch = 1; ch < membership::kChannels; ++ch) {
      const std::string n = std::to_string(ch);
      Traffic t{at("user_messages_sent." + n), at("user_bytes_sent." + n), at("user_stream_bytes_sent." + n)};
      // What a channel sends rides in membership's packets and streams:
      // take it out of membership's share.
      members.messages -= t.messages;
      members.bytes -= t.bytes;
      members.stream_bytes -= t.stream_bytes;
      Traffic& into = out[std::string(membership::ChannelName(ch))];
      into.messages += t.messages;
      into.bytes += t.bytes;
      into.stream_bytes += t.stream_bytes;
    }
  }
  return out;
}

TrafficByProtocol Minus(const TrafficByProtocol& b, const TrafficByProtocol& a) {
  TrafficByProtocol out;
  for (const auto& [name, t] : b) {
    Traffic d = t;
    if (auto it = a.find(name); it != a.end()) {
      d.messages -= it->second.messages;
      d.bytes -= it->second.bytes;
      d.stream_bytes -= it->second.stream_bytes;
    }
    out[name] = d;
  }
  return out;
}

}  // namespace starling::sim
