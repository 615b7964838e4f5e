@0xc4a1e3b25d9f7e10;
# The desired-state log: its entries, the messages that replicate them
# between daemons, and the records it keeps on disk.
#
# On the wire a LogMessage rides inside the gossip Envelope as a membership
# `user` payload (datagram broadcast or stream request/reply), so the cluster
# check and encryption of the envelope cover it. On disk the same structs are
# the values of the RocksDB keys documented in store/README.md.
#
# Compatibility: fields are only added with new ordinals; `version` is bumped
# for changes in meaning and a receiver drops messages outside its range.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("starling::logwire");

const logVersion :UInt16 = 1;

# A hybrid logical clock reading: wall-clock microseconds (Unix epoch) and a
# counter that orders events within one microsecond or under clock skew.
struct Hlc {
  wall @0 :Int64;
  logical @1 :UInt32;
}

# One change to one object of the desired state: a put of its canonical JSON,
# or a delete.
struct Op {
  key @0 :Text;       # e.g. "packages/web", "policy"
  value @1 :Text;     # canonical JSON; ignored when `delete`
  delete @2 :Bool;
  rank @3 :UInt64;    # orders the register before the entry's stamp (0 but for `voters`; store/README.md)
}

# An operator's change, written on one node and replicated to all.
# Identity: (origin, seq); order: (hlc, origin, seq).
struct Entry {
  origin @0 :UInt64;      # random id of the writer's data directory
  originName @1 :Text;    # the writer's member name, for people
  seq @2 :UInt64;         # 1, 2, ... per origin
  hlc @3 :Hlc;
  base @4 :Hlc;           # the newest change the writer had seen: concurrent changes have hlc > base
  note @5 :Text;          # what the change was: "apply", "rollback to ...", ...
  ops @6 :List(Op);
}

struct HighWater {
  origin @0 :UInt64;
  seq @1 :UInt64;         # every entry of `origin` up to `seq` is held
}

# The value an object of the desired state has, and which entry wrote it.
struct Register {
  key @0 :Text;
  value @1 :Text;
  deleted @2 :Bool;
  hlc @3 :Hlc;
  origin @4 :UInt64;
  seq @5 :UInt64;
  rank @6 :UInt64;        # the writing op's rank
}

# One line of history: the revision after an entry was folded in.
struct Revision {
  id @0 :Text;
  hlc @1 :Hlc;
  digest @2 :Text;
  origin @3 :UInt64;
  originName @4 :Text;
  seq @5 :UInt64;
  note @6 :Text;
  conflict @7 :Text;      # empty, or why this change lost to a concurrent one
  changed @8 :Bool;       # whether the content changed
}

# Entries folded into registers. Registers merge by last-writer-wins, so a
# snapshot plus any later entries gives the same state as all the entries.
struct Snapshot {
  covered @0 :List(HighWater);
  registers @1 :List(Register);
  history @2 :List(Revision);   # the newest revisions up to the cut, oldest first
  entries @3 :UInt64;           # how many entries it folds
  documents @4 :List(Document); # the content of the revisions in `history`
}

struct Document {
  digest @0 :Text;
  json @1 :Text;
}

# Anti-entropy. The requester says what it holds and may push entries the
# peer lacks; the reply carries what the requester lacks (entries, or a
# snapshot when the requester is behind the peer's compaction) and what the
# peer holds.
struct SyncRequest {
  from @0 :Text;
  have @1 :List(HighWater);
  push @2 :List(Entry);
}

struct SyncReply {
  have @0 :List(HighWater);
  entries @1 :List(Entry);
  snapshot @2 :Snapshot;
  hasSnapshot @3 :Bool;
  more @4 :Bool;          # more entries wait: ask again
}

# A change too large for a datagram is announced; whoever lacks it asks
# `holder` by a sync request.
struct Announce {
  origin @0 :UInt64;
  seq @1 :UInt64;
  holder @2 :Text;        # host:port of a node that holds the entry
}

struct LogMessage {
  version @0 :UInt16;
  union {
    entry @1 :Entry;
    announce @2 :Announce;
    syncRequest @3 :SyncRequest;
    syncReply @4 :SyncReply;
  }
}
