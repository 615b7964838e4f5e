#include "starling/membership/config.h"

#include "starling/membership/memberlist.h"

namespace starling::membership {

std::optional<Timing> ProfileTiming(std::string_view name) {
  Timing t;
  if (name == "lan") return t;  // the defaults are memberlist's LAN preset
  if (name == "local") {
    t.profile = "local";
    t.probe_interval = 1s;
    t.probe_timeout = 200ms;
    t.suspicion_mult = 3;
    t.suspicion_max_timeout_mult = 6;
    t.gossip_interval = 100ms;
    t.gossip_nodes = 3;
    t.push_pull_interval = 15s;
    t.retransmit_mult = 2;
    t.indirect_checks = 1;
    t.gossip_to_the_dead = 15s;
    return t;
  }
  if (name == "wan") {
    t.profile = "wan";
    t.probe_interval = 5s;
    t.probe_timeout = 3s;
    t.suspicion_mult = 6;
    t.suspicion_max_timeout_mult = 6;
    t.gossip_interval = 500ms;
    t.gossip_nodes = 4;
    t.push_pull_interval = 60s;
    t.retransmit_mult = 4;
    t.indirect_checks = 3;
    t.gossip_to_the_dead = 60s;
    return t;
  }
  return std::nullopt;
}

std::string_view StatusName(MemberStatus s) {
  switch (s) {
    case MemberStatus::kAlive: return "alive";
    case MemberStatus::kSuspect: return "suspect";
    case MemberStatus::kFailed: return "failed";
    case MemberStatus::kLeft: return "left";
  }
  return "unknown";
}

std::string_view EventName(EventType t) {
  switch (t) {
    case EventType::kJoined: return "member-join";
    case EventType::kUpdated: return "member-update";
    case EventType::kSuspect: return "member-suspect";
    case EventType::kFailed: return "member-failed";
    case EventType::kLeft: return "member-leave";
    case EventType::kReaped: return "member-reap";
    case EventType::kAlive: return "member-alive";
  }
  return "unknown";
}

std::string RangeText(uint16_t min, uint16_t max) {
  return min == max ? std::to_string(min) : std::to_string(min) + "-" + std::to_string(max);
}

}  // namespace starling::membership
