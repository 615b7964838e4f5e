// User events and queries: Serf's two broadcast primitives, on membership's
// user channel (Channel::kEvents, Channel::kQuery).
//
// User events
//  * `Send` stamps an event with this node's Lamport time for user events
//    and broadcasts it; every member that takes it for the first time hands
//    it on (delivered to the event handlers and logged, so `monitor` shows
//    it) and broadcasts it again. A member thus hears it from many senders:
//    one lost datagram, or a sender that dies right after sending, does not
//    lose it. Serf re-broadcasts too, but its bounded queue drops events
//    under load; the user-channel queue is not bounded (each event is capped
//    in size instead).
//  * De-duplication: an event is the same when its Lamport time, name and
//    payload are; each is remembered for kEventMemory after it first came
//    (at most kMaxRemembered), long past the few seconds a broadcast lives.
//    Unlike Serf's buffer of the last 512 Lamport times, nothing is dropped
//    for being old: the clock is not kept across restarts, so a restarted
//    member's first events carry small times until it witnesses others'.
//  * Name plus payload are at most kMaxEventBytes (Serf's limit); more is
//    refused with a message that says the size and the limit.
//
// Queries
//  * `Ask` broadcasts a query (name, payload, filters: member names and
//    KEY=REGEX tag filters, all of which must hold); every member that takes
//    it re-broadcasts it once. A member that matches sends an ack (unless
//    --no-ack) straight to the asker's address, hands the query to its
//    handlers and sends the first handler's output back as the response
//    (capped at kMaxResponseBytes). With a relay factor K, each ack and
//    response also goes through K other live members, which forward it: a
//    lossy path between two members is then not the only one.
//  * Retries, which Serf does not make: at a third and at two thirds of the
//    timeout the asker broadcasts the query again, naming the members whose
//    answer arrived; a member that answered before and is not named sends
//    its ack and response again (its handler does not run twice).
//  * The asker gets every ack and response as it arrives (de-duplicated),
//    and at the deadline a summary: who acked, who answered, and which
//    members that match the filters as the asker sees them stayed silent.
//  * Everything from the network is checked: sizes, clean names, the regex
//    (a bad one drops the query), a relay only towards the address the
//    asker's member entry has.
// Single-threaded on the protocol thread.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "starling/env.h"
#include "starling/membership/memberlist.h"
#include "starling/status.h"

namespace starling::membership {
class UserChannels;
}

namespace starling::node {

inline constexpr size_t kMaxEventBytes = 512;     // a user event's name + payload
inline constexpr size_t kMaxQueryBytes = 1024;    // a query's name + payload
inline constexpr size_t kMaxResponseBytes = 1024; // one response's payload
inline constexpr int kMaxRelayFactor = 5;
inline constexpr Duration kEventMemory = std::chrono::minutes(5);
inline constexpr size_t kMaxRemembered = 8192;
// The query `starling reachability` sends: acked by every member that takes it, no handler runs.
inline constexpr const char* kPingQuery = "_starling_ping";

// Serf's Lamport clock: Witness what others sent, Increment to send.
class LamportClock {
 public:
  uint64_t Time() const { return time_; }
  uint64_t Increment() { return ++time_; }
  void Witness(uint64_t t) {
    if (t > time_) time_ = t;
  }

 private:
  uint64_t time_ = 0;
};

struct UserEvent {
  std::string name;
  std::string payload;
  uint64_t ltime = 0;
  bool coalesce = false;
  bool operator==(const UserEvent&) const = default;
};

// KEY=REGEX: the tag KEY must exist and REGEX (ECMAScript) match its whole value.
struct TagFilter {
  std::string key, regex;
  bool operator==(const TagFilter&) const = default;
};
// "KEY=REGEX" into a filter; kInvalidArgument names what is wrong (no '=', a bad regex).
Result<TagFilter> ParseTagFilter(const std::string& text);
// Whether a member with `name` and `tags` passes `nodes` (empty: any) and every tag filter.
bool MatchesFilters(const std::string& name, const membership::Tags& tags, const std::vector<std::string>& nodes,
                    const std::vector<TagFilter>& filters);

struct QueryParams {
  std::string name, payload;
  std::vector<std::string> nodes;
  std::vector<TagFilter> tags;
  Duration timeout{0};  // zero: DefaultQueryTimeout
  bool no_ack = false;
  int relay_factor = 0;
};

// What a member that takes a query hands its handlers.
struct QueryEvent {
  std::string name, payload, origin;
  uint64_t ltime = 0;
  uint32_t id = 0;
  Duration timeout{0};  // what is left of the asker's timeout, roughly
};

// One arrival at the asker.
struct QueryArrival {
  std::string from;
  bool ack = false;  // false: a response
  std::string payload;
  Duration after{0};  // since the query was asked
};

struct QuerySummary {
  uint32_t id = 0;
  uint64_t ltime = 0;
  Duration timeout{0};
  std::vector<std::string> acked, answered;
  // Alive (or suspect) members that match the filters as the asker saw them
  // when it asked, and sent nothing back (no ack, or with --no-ack no response).
  std::vector<std::string> silent;
  std::vector<std::string> matched;  // those members
};

// Wire codecs; decoders never throw, kCorruption says why.
Bytes EncodeUserEvent(const UserEvent& e);
Result<UserEvent> DecodeUserEvent(ByteView bytes);

struct QueryMessage {
  uint32_t id = 0;
  uint64_t ltime = 0;
  std::string origin, origin_addr;
  QueryParams params;
  int attempt = 0;
  std::vector<std::string> heard;
  bool operator==(const QueryMessage& o) const;
};
Bytes EncodeQuery(const QueryMessage& q);
Result<QueryMessage> DecodeQuery(ByteView bytes);

struct QueryResponseMessage {
  uint32_t id = 0;
  uint64_t ltime = 0;
  std::string origin, from;
  bool ack = false;
  std::string payload;
  std::string relay_to;  // set: forward to this address
  bool operator==(const QueryResponseMessage&) const = default;
};
Bytes EncodeQueryResponse(const QueryResponseMessage& r);
Result<QueryResponseMessage> DecodeQueryResponse(ByteView bytes);

// Serf's default: gossip interval * 16 * ceil(log10(n + 1)).
Duration DefaultQueryTimeout(const membership::Memberlist& members);

class UserEvents {
 public:
  using Deliver = std::function<void(const UserEvent&)>;
  // `channels` and `clock` must outlive this.
  UserEvents(membership::UserChannels& channels, Clock& clock, Deliver deliver);
  ~UserEvents();
  UserEvents(const UserEvents&) = delete;
  UserEvents& operator=(const UserEvents&) = delete;

  // Broadcasts an event (and delivers it here too); its Lamport time, or
  // kInvalidArgument for an empty or unclean name or one too large.
  Result<uint64_t> Send(const std::string& name, const std::string& payload, bool coalesce);
  uint64_t ltime() const { return clock_.Time(); }
  // received: taken (first copy); duplicates; rejected: undecodable.
  struct Counts {
    uint64_t sent = 0, received = 0, duplicates = 0, rejected = 0;
  };
  const Counts& counts() const { return counts_; }

 private:
  void HandlePacket(const std::string& from, ByteView data);
  // True the first time this event is seen (and remembers it).
  bool Remember(const UserEvent& e);

  membership::UserChannels& channels_;
  Clock& time_;
  Deliver deliver_;
  LamportClock clock_;
  std::set<std::string> seen_;                       // ltime '\0' name '\0' payload
  std::deque<std::pair<Time, std::string>> arrivals_;  // the same keys, oldest first
  Counts counts_;
};

class Queries {
 public:
  // Hands a query this member matches to its handlers; `respond` takes the
  // first handler's output (called at most once, maybe never).
  using Deliver = std::function<void(const QueryEvent&, std::function<void(std::string)> respond)>;
  Queries(membership::UserChannels& channels, Clock& clock, Random& random, Deliver deliver);
  ~Queries();
  Queries(const Queries&) = delete;
  Queries& operator=(const Queries&) = delete;

  using OnArrival = std::function<void(const QueryArrival&)>;
  using OnDone = std::function<void(const QuerySummary&)>;
  // Asks; `arrival` for each ack and response, then `done` once at the
  // deadline. kInvalidArgument for a bad name, too large a query, a relay
  // factor out of 0..kMaxRelayFactor.
  Result<uint32_t> Ask(QueryParams params, OnArrival arrival, OnDone done);
  uint64_t ltime() const { return lclock_.Time(); }
  struct Counts {
    uint64_t asked = 0, received = 0, answered = 0, relayed = 0, rejected = 0, truncated = 0;
  };
  const Counts& counts() const { return counts_; }

 private:
  struct Pending;
  struct Seen;
  void HandlePacket(const std::string& from, ByteView data);
  void HandleQuery(const QueryMessage& q);
  void HandleResponse(const std::string& from, QueryResponseMessage r);
  void Send(const QueryMessage& q, QueryResponseMessage r);
  void Retry(uint32_t id, int attempt);
  void Finish(uint32_t id);

  membership::UserChannels& channels_;
  Clock& clock_;
  Random& random_;
  Deliver deliver_;
  LamportClock lclock_;
  uint32_t next_id_;
  std::map<uint32_t, std::unique_ptr<Pending>> pending_;
  std::map<std::pair<std::string, uint32_t>, std::unique_ptr<Seen>> seen_;  // (origin, id)
  Counts counts_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace starling::node
