// Memberlist: SWIM with the Lifeguard refinements, as a pure state machine.
//
// Contract
//  * Driven only through the injected Clock, Transport and Random, and by the
//    owner calling HandlePacket / HandleStream with received bytes. It never
//    blocks, sleeps, opens sockets or reads the OS clock.
//  * Single-threaded: every method, and every callback it registers, runs on
//    the owner's protocol thread.
//  * Bytes from the network are untrusted: a packet that fails to decode, has
//    a foreign protocol version or cluster name is dropped, counted under
//    `bad_packets.<reason>` and logged (rate-limited); it never throws.
//
// See membership/README.md for the protocol, the timing formulas and how they
// derive from memberlist's.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "starling/membership/config.h"
#include "starling/membership/coordinate.h"
#include "starling/env.h"

namespace starling::membership {

enum class MemberStatus { kAlive, kSuspect, kFailed, kLeft };
std::string_view StatusName(MemberStatus s);  // "alive", "suspect", "failed", "left"

// What a node holds of each member: every node holds one per member, so it
// is small, and its strings and tags are interned (starling/atom.h), shared
// with every other holder of the same member. The record as a whole is
// interned too (what the holders of a member know of it is mostly the same):
// when this node saw the status change is held beside it.
struct MemberRecord {
  Atom name;
  Atom addr;
  MemberStatus status = MemberStatus::kAlive;
  uint16_t protocol_min = kProtocolMin;  // the range it understands
  uint16_t protocol_max = kProtocolMax;
  uint16_t protocol_cur = kProtocolVersion;  // the version it speaks
  uint64_t incarnation = 0;
  TagSet tags;
  Atom release;  // "0.1.0"; empty when not told (a protocol 1 node)
  bool operator==(const MemberRecord&) const = default;
};

struct MemberView : MemberRecord {
  MemberView() = default;
  // Explicit: a copy made by accident (a reader taking a view where the
  // list hands out records) costs a copy per member per call.
  explicit MemberView(const MemberRecord& r, std::optional<Coordinate> c = std::nullopt)
      : MemberRecord(r), coordinate(std::move(c)) {}
  // Its network coordinate as this node last heard it (ours for ourselves);
  // none until a probe of it was acked.
  std::optional<Coordinate> coordinate{};
};

struct MemberCounts {
  size_t alive = 0, suspect = 0, failed = 0, left = 0;
};

enum class EventType { kJoined, kUpdated, kSuspect, kFailed, kLeft, kReaped, kAlive };
std::string_view EventName(EventType t);

struct Event {
  EventType type;
  MemberView member;
};

// Counters by name, e.g. "messages_sent.ping", "bad_packets.decode",
// "suspicions", "refutations", "bytes_received".
using Counters = std::map<std::string, uint64_t>;

// Upper bounds (microseconds) of the probe round-trip buckets: each acked
// probe counts once in "probe_rtt_bucket.<bound>", the smallest bound it
// fits; longer ones only in probe_rtt_count.
inline constexpr uint64_t kProbeRttBucketsUs[] = {500,    1000,   2500,    5000,    10000,  25000,
                                                  50000,  100000, 250000,  500000,  1000000, 2500000};

class Memberlist {
 public:
  using EventFn = std::function<void(const Event&)>;

  // The references must outlive the Memberlist.
  Memberlist(Config config, Clock& clock, Transport& transport, Random& random, EventFn on_event = {});
  ~Memberlist();
  Memberlist(const Memberlist&) = delete;
  Memberlist& operator=(const Memberlist&) = delete;

  // Adds this node as alive and starts the probe, gossip, push-pull and reap
  // timers. Call once.
  void Start();

  // Contacts each seed by push-pull. `done` gets how many answered, or
  // kConflict when a seed refused us because our name is held by a live
  // member at another address, or kUnavailable when none answered.
  using JoinDone = std::function<void(Result<int>)>;
  void Join(std::vector<std::string> seeds, JoinDone done);
  // Join, retrying every join_retry_interval until one seed answers,
  // `max_attempts` tries (0 = forever), or a conflict.
  void JoinWithRetry(std::vector<std::string> seeds, int max_attempts, JoinDone done);

  // Seeds a restarted node with the members it knew: they are tried by
  // push-pull like seeds, and kept as failed members to reconnect to.
  void AddKnownMembers(const std::vector<MemberView>& members);

  // Announces a graceful leave and runs `done` once the news has been sent
  // to the cluster (or leave_propagate_wait passed). Afterwards the node no
  // longer answers probes.
  void Leave(std::function<void()> done);

  // Marks a failed member as left on every node (or erases it with `prune`).
  // kNotFound for an unknown name, kInvalidArgument for ourselves, and
  // kConflict for a member we see alive.
  Status ForceLeave(const std::string& name, bool prune);

  // Replaces our tags and announces them with a new incarnation.
  void SetTags(Tags tags);

  // Stops every timer; later packets are ignored.
  void Shutdown();

  void HandlePacket(const std::string& from, ByteView packet);
  // Where a stream's reply frame goes: called once, on the protocol thread,
  // now or later (a user-channel handler may answer after blocking work off
  // the thread); empty drops the request.
  using StreamReply = std::function<void(Bytes)>;
  // Handles one stream request; the reply frame goes to `reply`.
  void HandleStream(const std::string& from, ByteView request, StreamReply reply);

  // Reads.
  std::vector<MemberView> Members() const;  // sorted by name, ourselves included
  // The same without copying them, for a reader that runs often on a large
  // list; the views carry no coordinate (CoordinateOf has it). `fn` must not
  // change the list.
  void ForEachMember(const std::function<void(const MemberRecord&)>& fn) const;
  // Up to k alive members after `name` in name order, wrapping around,
  // ourselves left out: a cursor that visits every member in turn.
  std::vector<MemberView> NextAlive(const std::string& name, size_t k) const;
  // Up to k distinct alive members other than ourselves, chosen with
  // `random`, without listing every member (a large list's readers pick a
  // peer every few seconds).
  std::vector<MemberRecord> RandomAlive(size_t k, Random& random) const;
  // Grows with every event (a member joined, changed, failed, ...): a reader
  // that saw the same epoch may skip reading the list again.
  uint64_t Epoch() const;
  MemberView Self() const;
  size_t NumAlive() const;                  // alive + suspect, ourselves included
  MemberCounts Counts() const;              // by status, ourselves included
  std::optional<MemberStatus> StatusOf(const std::string& name) const;
  std::optional<std::string> AddrOf(const std::string& name) const;
  // The network coordinate of a member (coordinate.h), ours included; none
  // for one not probed yet.
  std::optional<Coordinate> CoordinateOf(const std::string& name) const;
  int HealthScore() const;
  const Counters& counters() const;
  const Config& config() const;
  bool left() const;

  // ---- a channel for the layer above (the desired-state log) --------------
  // Membership carries opaque payloads for it: broadcasts piggybacked on
  // gossip like membership news, direct datagrams, and request/reply streams,
  // all inside the same envelope (so the same cluster check and, later,
  // encryption apply). Handlers run on the protocol thread.
  using UserPacketFn = std::function<void(const std::string& from, ByteView data)>;
  // Gives the reply payload to `reply`, once, now or later; empty drops the
  // request. `data` is valid only during the call.
  using UserStreamFn = std::function<void(const std::string& from, ByteView data, StreamReply reply)>;
  void SetUserHandlers(UserPacketFn on_packet, UserStreamFn on_stream);
  // The largest payload that fits a datagram's budget as one broadcast.
  size_t UserBroadcastBudget() const;
  // Queued like membership news but sent three times as often (3 * mult *
  // log(n)): it has no push-pull to repair a miss. A newer broadcast under
  // the same key replaces an older one.
  void QueueUserBroadcast(const std::string& key, Bytes data);
  void SendUserPacket(const std::string& addr, Bytes data);
  void SendUserStream(const std::string& addr, Bytes data, Duration timeout, Transport::StreamDone done);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace starling::membership
