// The queue of membership news waiting to ride piggyback on outgoing packets.
//
// Each broadcast is about one member (its key); a newer broadcast about the
// same member replaces the older one, since it supersedes it. Broadcasts are
// handed out fewest-transmits-first (newest first among equals) and dropped
// after RetransmitLimit() sends, which grows as mult * ceil(log10(n + 1)):
// in SWIM's epidemic a rumour reaches all n members with high probability
// after O(log n) rounds.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "codec.h"

namespace starling::membership {

class BroadcastQueue {
 public:
  // What rides piggyback: a queue holds no pings or acks, so it keeps its
  // news in a variant of these only, a fraction of wire::Message's size (a
  // join wave leaves one per member in every member's queue).
  using News = std::variant<wire::Alive, wire::Suspect, wire::Dead, wire::Leave, wire::User>;

  explicit BroadcastQueue(int retransmit_mult) : mult_(retransmit_mult) {}

  // `mult` overrides the retransmit multiplier for this broadcast (0 keeps
  // the queue's): news that must reach everyone can buy more sends.
  void Queue(const std::string& key, News msg, int mult = 0);
  // Takes broadcasts whose estimated sizes fit into `budget` bytes, counting
  // one transmit against each. `num_nodes` sets the retransmit limit.
  std::vector<wire::Message> Take(size_t budget, size_t num_nodes);
  bool Contains(const std::string& key) const { return by_key_.find(key) != by_key_.end(); }
  size_t size() const { return by_key_.size(); }
  void Clear();
  static int RetransmitLimit(int mult, size_t num_nodes);

 private:
  struct Entry {
    uint32_t transmits;
    uint64_t id;  // larger is newer
    bool operator<(const Entry& o) const {
      return transmits != o.transmits ? transmits < o.transmits : id > o.id;
    }
  };
  struct Item {
    Atom key;  // a member's name, mostly: shared with its record
    uint32_t size;
    uint32_t mult;
    News msg;
  };
  int mult_;
  uint64_t next_id_ = 0;
  std::map<Entry, Item> order_;
  std::map<Atom, Entry, std::less<>> by_key_;
};

}  // namespace starling::membership
