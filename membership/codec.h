// Wire codec: C++ message structs <-> schema/gossip.capnp bytes.
//
// This is the trust boundary for everything a peer sends. Decode* never
// throws: bytes that fail Cap'n Proto validation, exceed our limits, carry a
// protocol version outside the receiver's range or another cluster's
// name come back as BadInput with a short `reason` (used as a counter name)
// and a `detail` for the log line. It is the function the fuzzers target.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "starling/membership/config.h"
#include "starling/membership/coordinate.h"
#include "starling/env.h"

namespace starling::membership::wire {

struct Ping {
  uint32_t seq = 0;
  std::string target, source_name, source_addr;
};
struct IndirectPing {
  uint32_t seq = 0;
  std::string target, target_addr;
  bool want_nack = false;
  std::string source_name, source_addr;
};
struct Ack {
  uint32_t seq = 0;
  std::optional<Coordinate> coordinate{};  // the answerer's, on a direct probe's ack
  bool bad_coordinate = false;             // one came and was out of range (dropped)
};
struct Nack {
  uint32_t seq = 0;
};
// Interned (starling/atom.h): every node keeps the news about a member in its
// broadcast queue until it has been sent on, a join wave's worth of them.
struct Alive {
  Atom name, addr;
  uint64_t incarnation = 0;
  TagSet tags;
  uint16_t protocol_min = kProtocolMin, protocol_max = kProtocolMax, protocol_cur = kProtocolVersion;
  Atom release{};  // the release the member runs
};
// The names in news are interned as Alive's are: the news waits in every
// member's queue, and names a member its holder already knows.
struct Suspect {
  Atom name;
  uint64_t incarnation = 0;
  Atom from;
};
struct Dead {
  Atom name;
  uint64_t incarnation = 0;
  Atom from;
};
struct Leave {
  Atom name;
  uint64_t incarnation = 0;
  Atom from;
  bool prune = false;
};
// An opaque payload for the layer above membership.
struct User {
  Bytes data;
};
using Message = std::variant<Ping, IndirectPing, Ack, Nack, Alive, Suspect, Dead, Leave, User>;
// Counter suffix for a message: "ping", "indirect_ping", "ack", ...
const char* MessageTypeName(const Message& m);
inline constexpr size_t kMessageTypes = std::variant_size_v<Message>;

enum class StateStatus : uint8_t { kAlive, kSuspect, kDead, kLeft };
struct MemberState {
  std::string name, addr;
  uint64_t incarnation = 0;
  StateStatus status = StateStatus::kAlive;
  Tags tags;
  uint16_t protocol_min = kProtocolMin, protocol_max = kProtocolMax, protocol_cur = kProtocolVersion;
  std::string release{};  // the release the member runs
};
struct PushPull {
  bool join = false;
  std::string from;
  std::vector<MemberState> members;
  uint64_t digest = 0;       // of the sender's table (TableDigest), with digest_only
  bool digest_only = false;  // the sender's table is left out
  bool same = false;         // a reply: the tables' digests are equal
};
struct StreamRequest {
  std::variant<PushPull, User> body;
};
// Why a request was refused.
struct Refused {
  std::string why;
  // The responder could not open the request (or the cluster keys differ);
  // sent in the clear, so it may change nothing but a log line.
  bool key = false;
};
struct StreamReply {
  std::variant<PushPull, Refused, User> body;
};

struct BadInput {
  std::string reason;  // decode | version | cluster | too_large | invalid
  std::string detail;
  uint16_t version = 0;  // the envelope's, when reason is "version"
};
template <typename T>
using Decoded = std::variant<T, BadInput>;

// Limits on what a peer may make us hold.
inline constexpr size_t kMaxNameBytes = 256;
inline constexpr size_t kMaxAddrBytes = 262;
inline constexpr size_t kMaxReleaseBytes = 64;
inline constexpr size_t kMaxTags = 64;
inline constexpr size_t kMaxTagBytes = 1024;
inline constexpr size_t kMaxMessagesPerPacket = 512;
inline constexpr size_t kMaxPacketBytes = 65536;

// A conservative upper bound on a message's encoded size, for packing
// piggybacked broadcasts into the datagram budget.
size_t EstimateSize(const Message& m);
// Bytes an empty packet envelope costs on top of its messages.
size_t EnvelopeOverhead(const std::string& cluster);

// Encoders stamp the envelope with `version`, the protocol the sender speaks;
// decoders refuse an envelope whose version `protocol` does not understand
// (reason "version"), except a stream reply that is a refusal, which a joiner
// must read whatever the responder speaks.
Bytes EncodePacket(const std::string& cluster, const std::vector<Message>& messages,
                   uint16_t version = kProtocolVersion);
Decoded<std::vector<Message>> DecodePacket(ByteView bytes, const std::string& cluster,
                                           const Protocol& protocol = Protocol{});

Bytes EncodeStreamRequest(const std::string& cluster, const StreamRequest& req, uint16_t version = kProtocolVersion);
Decoded<StreamRequest> DecodeStreamRequest(ByteView bytes, const std::string& cluster, size_t max_bytes,
                                           const Protocol& protocol = Protocol{});
Bytes EncodeStreamReply(const std::string& cluster, const StreamReply& reply, uint16_t version = kProtocolVersion);
Decoded<StreamReply> DecodeStreamReply(ByteView bytes, const std::string& cluster, size_t max_bytes,
                                       const Protocol& protocol = Protocol{});

// Builds an envelope with arbitrary header fields around `payload`; for tests
// that need a foreign version or cluster.
Bytes EncodeEnvelopeForTest(uint16_t version, const std::string& cluster, const Bytes& payload);

}  // namespace starling::membership::wire
