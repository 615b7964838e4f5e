@0x8123229ac931c174;
# Gossip wire format between starlingd daemons.
#
# Every UDP datagram and every stream (TCP) frame is one Envelope. The envelope
# is the only part a receiver reads before it knows the sender speaks our
# protocol: it checks `version` against its supported range and `cluster`
# against its own cluster name, and drops the packet (one log line, one
# counter) when either does not match.
#
# In an encrypted cluster the whole Envelope, header included, travels inside
# a sealed frame (membership/include/starling/membership/keyring.h), which is
# opened before any of it is parsed: but for a clear key refusal (which can
# only end its own exchange) no unauthenticated byte reaches the
# Cap'n Proto reader, and the cluster name and version are hidden too. So
# `keyId` and `nonce` stay unused (always 0 and empty).
#
# A datagram's payload is a Packet: a compound of messages, so that membership
# news (alive/suspect/dead/leave) rides piggyback on probes and acks.
# A stream frame's payload is a StreamRequest or a StreamReply.
#
# Compatibility: fields are only ever added with new ordinals; a receiver
# ignores fields it does not know. Bumping `version` is for changes in meaning.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("starling::wire");

struct Envelope {
  version @0 :UInt16;   # the sender's protocol version
  cluster @1 :Text;     # the sender's cluster name; others ignore the packet
  keyId @2 :UInt32;     # unused (0): sealing wraps the whole envelope
  nonce @3 :Data;       # unused (empty)
  payload @4 :Data;     # a serialized Packet / StreamRequest / StreamReply
}

struct Packet {
  messages @0 :List(Message);
}

struct Message {
  union {
    ping @0 :Ping;
    indirectPing @1 :IndirectPing;
    ack @2 :Ack;
    nack @3 :Nack;
    alive @4 :Alive;
    suspect @5 :Suspect;
    dead @6 :Dead;
    leave @7 :Leave;
    user @8 :Data;        # a payload for the layer above membership (the desired-state log);
                          # membership only carries it, as a broadcast or a direct datagram
  }
}

# A direct probe. `target` lets a node that took over an address ignore
# probes meant for its predecessor.
struct Ping {
  seqNo @0 :UInt32;
  target @1 :Text;
  sourceName @2 :Text;
  sourceAddr @3 :Text;   # host:port to answer to
}

# Ask the receiver to probe `target` on the sender's behalf (SWIM ping-req).
struct IndirectPing {
  seqNo @0 :UInt32;
  target @1 :Text;
  targetAddr @2 :Text;
  wantNack @3 :Bool;      # Lifeguard: answer with a Nack if the target is silent
  sourceName @4 :Text;
  sourceAddr @5 :Text;
}

struct Ack {
  seqNo @0 :UInt32;
  # The answering member's network coordinate (Vivaldi), on a direct probe's
  # ack only; absent from older daemons and from relays.
  coordinate @1 :Coordinate;
}

struct Coordinate {
  vec @0 :List(Float32);    # 8 components, seconds
  error @1 :Float32;
  adjustment @2 :Float32;
  height @3 :Float32;
}

# Lifeguard: the relay of an indirect probe heard nothing from the target.
# The prober learns its own links work, so the silence is the target's.
struct Nack {
  seqNo @0 :UInt32;
}

struct Tag {
  key @0 :Text;
  value @1 :Text;
}

# A member is alive at `incarnation`. Only the member itself raises its
# incarnation (to refute suspicion or announce new tags).
struct Alive {
  name @0 :Text;
  addr @1 :Text;
  incarnation @2 :UInt64;
  tags @3 :List(Tag);
  protocolMin @4 :UInt16;   # the range the member understands
  protocolMax @5 :UInt16;
  protocolCur @6 :UInt16;   # the version it speaks; 0 from protocol 1 nodes, which speak their max
  release @7 :Text;         # the release it runs ("0.1.0"); empty from protocol 1 nodes
}

struct Suspect {
  name @0 :Text;
  incarnation @1 :UInt64;
  from @2 :Text;          # who suspects: distinct senders shorten the timeout
}

struct Dead {
  name @0 :Text;
  incarnation @1 :UInt64;
  from @2 :Text;
}

# A member left on purpose (from == name) or was made to by force-leave.
struct Leave {
  name @0 :Text;
  incarnation @1 :UInt64;
  from @2 :Text;
  prune @3 :Bool;         # erase the member instead of keeping it as `left`
}

enum MemberStatus {
  alive @0;
  suspect @1;
  dead @2;
  left @3;
}

struct MemberState {
  name @0 :Text;
  addr @1 :Text;
  incarnation @2 :UInt64;
  status @3 :MemberStatus;
  tags @4 :List(Tag);
  protocolMin @5 :UInt16;
  protocolMax @6 :UInt16;
  protocolCur @7 :UInt16;
  release @8 :Text;
}

# Full-state anti-entropy exchange, also used to join.
struct PushPull {
  join @0 :Bool;
  members @1 :List(MemberState);
  from @2 :Text;          # the sender's member name
  # The periodic exchange first sends only a digest of its member table
  # (digestOnly, no members); a responder whose table has the same digest
  # answers `same` and nothing more, else its whole table, after which the
  # asker sends its own. A responder that predates this answers the
  # digest-only request with its whole table, as it always did.
  digest @3 :UInt64;
  digestOnly @4 :Bool;
  same @5 :Bool;
}

struct StreamRequest {
  union {
    pushPull @0 :PushPull;
    user @1 :Data;        # a request for the layer above membership (log sync, artifacts)
  }
}

struct StreamReply {
  union {
    pushPull @0 :PushPull;
    refused @1 :Text;     # why the request was refused (e.g. name in use)
    user @2 :Data;        # the reply to a `user` request
    keyRefused @3 :Text;  # sent in the clear: the request was not sealed with a key the node holds
  }
}
