@0xa3c1d7e5f9b20486;
# User events and queries (Serf's two broadcast primitives), on membership's
# user channel: a user event or a query rides gossip and is re-broadcast once
# by every member that takes it; acks and responses go straight back to the
# member that asked, as datagrams (or through relays).

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("starling::eventwire");

struct UserEvent {
  formatVersion @0 :UInt16;
  ltime @1 :UInt64;             # the sender's Lamport time for user events
  name @2 :Text;
  payload @3 :Data;
  coalesce @4 :Bool;            # handlers may see only the newest of a name within a short window
}

struct TagFilter {
  key @0 :Text;
  regex @1 :Text;               # must match the whole tag value (ECMAScript syntax)
}

struct Query {
  formatVersion @0 :UInt16;
  id @1 :UInt32;                # with origin, names the query
  ltime @2 :UInt64;             # the origin's Lamport time for queries
  origin @3 :Text;              # the asking member's name
  originAddr @4 :Text;          # where acks and responses go
  name @5 :Text;
  payload @6 :Data;
  nodes @7 :List(Text);         # only these members answer (empty: any)
  tags @8 :List(TagFilter);     # and only those whose tags match every filter
  timeoutMs @9 :UInt32;
  noAck @10 :Bool;
  relayFactor @11 :UInt8;       # each response is also sent through this many other members
  attempt @12 :UInt8;           # 0 first; a retry asks those not in `heard` to send again
  heard @13 :List(Text);        # on a retry: members whose answer arrived
}

struct QueryResponse {
  formatVersion @0 :UInt16;
  id @1 :UInt32;
  ltime @2 :UInt64;
  origin @3 :Text;              # the member that asked
  from @4 :Text;                # the member that answers
  ack @5 :Bool;                 # true: an ack; false: the response (payload)
  payload @6 :Data;
  relayTo @7 :Text;             # set: the receiver forwards this to that address (a relay)
}
