// Membership configuration and the lan / wan / local timing profiles.
//
// The profiles copy memberlist's presets so that Starling and Serf compare at
// equal settings.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "starling/atom.h"
#include "starling/env.h"
#include "starling/membership/keyring.h"

namespace starling::membership {

using namespace std::chrono_literals;
using Tags = std::map<std::string, std::string>;

struct TagsHash {
  size_t operator()(const Tags& t) const {
    size_t h = t.size();
    for (const auto& [k, v] : t)
      h = (h * 1099511628211u) ^ (std::hash<std::string>{}(k) * 31 + std::hash<std::string>{}(v));
    return h;
  }
};

// A member's tags as every holder keeps them: interned (starling/atom.h).
class TagSet : public intern::Handle<Tags, TagsHash> {
  using Base = intern::Handle<Tags, TagsHash>;

 public:
  TagSet() noexcept = default;
  TagSet(const Tags& t) : Base(t, t.empty()) {}
  TagSet(std::initializer_list<Tags::value_type> t) : TagSet(Tags(t)) {}
  operator const Tags&() const noexcept { return get(); }
  Tags::const_iterator begin() const noexcept { return get().begin(); }
  Tags::const_iterator end() const noexcept { return get().end(); }
  Tags::const_iterator find(const std::string& k) const { return get().find(k); }
  size_t count(const std::string& k) const { return get().count(k); }
  bool contains(const std::string& k) const { return get().contains(k); }
  const std::string& at(const std::string& k) const { return get().at(k); }
  size_t size() const noexcept { return get().size(); }
  bool empty() const noexcept { return get().empty(); }
  friend bool operator==(const TagSet& a, const TagSet& b) noexcept { return a.same(b); }
  friend bool operator==(const TagSet& a, const Tags& b) { return a.get() == b; }
};

// Gossip protocol versions. A node understands a range and speaks one
// version in it: its envelopes carry that version, and a receiver drops
// envelopes outside its own range. Two nodes may run together when each one's
// spoken version lies in the other's range (memberlist's rule); a join that
// breaks it is refused on both sides. The layers above gate features on the
// lowest version the members speak (the desired state's `agent` section needs 2).
//   1: membership, the desired-state log, the lease, rollouts, artifacts.
//   2: members gossip their release and spoken version; the `agent` section.
// These are this code base's defaults; the daemon takes its range from the
// binary's version unit (schema/version.h), so a second build of the same
// objects can understand a newer version.
inline constexpr uint16_t kProtocolMin = 1;
inline constexpr uint16_t kProtocolMax = 2;
// What a node speaks unless told otherwise (`starlingd --protocol N`): a
// release that understands a newer version keeps speaking this one, so it can
// join a cluster of the previous release during a rolling upgrade.
inline constexpr uint16_t kProtocolVersion = 2;

struct Protocol {
  uint16_t min = kProtocolMin;
  uint16_t max = kProtocolMax;
  uint16_t speak = kProtocolVersion;
  bool Understands(uint16_t v) const { return v >= min && v <= max; }
};
// "1-2", or "2" when min == max.
std::string RangeText(uint16_t min, uint16_t max);

struct Timing {
  std::string profile = "lan";
  Duration probe_interval = 1s;
  Duration probe_timeout = 500ms;
  int suspicion_mult = 4;
  int suspicion_max_timeout_mult = 6;
  Duration gossip_interval = 200ms;
  int gossip_nodes = 3;
  Duration push_pull_interval = 30s;
  int retransmit_mult = 4;
  int indirect_checks = 3;
  // Dead members still receive gossip for this long, so they learn of their
  // death and refute it quickly after a short blip.
  Duration gossip_to_the_dead = 30s;
};

// Returns the named profile ("lan", "wan" or "local"), or nullopt.
std::optional<Timing> ProfileTiming(std::string_view name);

struct Config {
  std::string name;            // unique in the cluster
  std::string advertise_addr;  // "host:port" others reach us at (UDP and TCP)
  std::string cluster = "default";
  Tags tags;
  Timing timing;
  Protocol protocol;
  // The release this node runs ("0.1.0"), gossiped with its membership.
  std::string release;

  // Lifeguard: local health multiplier, nacks, confirmation-shortened
  // suspicion and the buddy system. Off only to measure what it buys.
  bool lifeguard = true;
  int awareness_max_multiplier = 8;  // health score runs 0 .. this-1
  // Starling's own refinement: ping a suspect once more before declaring it
  // failed, and answer stale accusations directly (see memberlist.cc).
  bool last_chance_probe = true;

  // Incarnation to start from. The daemon passes (persisted generation << 32),
  // so it never goes backwards across restarts.
  uint64_t initial_incarnation = 1;

  Duration reap_timeout = std::chrono::hours(24);  // failed/left members are forgotten after this
  Duration reconnect_interval = 30s;               // first retry of a failed member; doubles
  Duration reconnect_max_backoff = std::chrono::minutes(10);
  Duration stream_timeout = 10s;                   // one push-pull exchange
  Duration join_retry_interval = 5s;
  Duration leave_propagate_wait = 2s;              // upper bound on how long Leave() waits
  size_t max_packet_bytes = 1400;                  // UDP budget for one compound packet
  // Packets per gossip target per gossip tick while broadcasts are backed up
  // (memberlist sends one): drains a join wave sooner, same bytes in all.
  int max_gossip_packets = 2;
  size_t max_stream_bytes = 16 << 20;              // refuse larger stream frames

  // Seals every datagram and stream frame; null or empty runs in the clear.
  // Shared with the node's key commands, which change it on the protocol
  // thread; a frame sealed under any key it holds is accepted.
  std::shared_ptr<Keyring> keyring;
  // A sealed frame stamped further than this from the receiver's wall clock
  // is refused, and one seen before within it (ReplayGuard). Also how far
  // the members' clocks may drift apart.
  Duration frame_window = 60s;
};

}  // namespace starling::membership
