@0xb6a0c1f2d3e4a5b7;
# The coordinator lease (PaxosLease) between voters, over membership's user
# channel (datagrams). One message kind per exchange step; fields a kind does
# not use stay zero. Versioned: a node drops versions outside its range.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("starling::leasewire");

enum Kind {
  prepare @0;    # proposer -> voters: may I use `round`?
  promise @1;    # voter -> proposer: ok, or not (then `promised` is what beat it);
                 # carries the lease it has accepted, if unexpired
  propose @2;    # proposer -> voters: accept `owner` for `durationMs` at `round`
  accept @3;     # voter -> proposer: ok, or not (`promised` beat it)
  release @4;    # holder -> voters: drop the lease accepted at `round`
  notice @5;     # holder -> everyone (gossip): `owner` holds `round` for `durationMs` more
}

struct LeaseMessage {
  version @0 :UInt16;
  kind @1 :Kind;
  from @2 :Text;            # sender's member name
  round @3 :UInt64;         # the ballot this message is about
  ok @4 :Bool;
  promised @5 :UInt64;      # the voter's highest promised ballot
  owner @6 :Text;           # propose/notice: the holder; promise: holder of the accepted lease
  durationMs @7 :UInt64;    # propose: lease length; promise/notice: time left on it
  acceptedRound @8 :UInt64; # promise: ballot of the accepted lease
}
