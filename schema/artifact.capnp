@0xb5c6d7e8f9a0b1c2;
# Artifact transfer between daemons (membership's user channel, stream
# exchanges only, so inside the sealed envelope when the cluster is
# encrypted). A node fetching an artifact asks peers which chunks they hold,
# then asks them for chunks; every chunk is checked against the digest the
# desired-state log lists for it, so a peer is never trusted with content.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("starling::artifactwire");

const formatVersion :UInt16 = 1;

struct ArtifactRequest {
  formatVersion @0 :UInt16;
  digest @1 :Text;          # "sha256:<64 hex>"
  union {
    have @2 :Void;          # which chunks do you hold?
    chunk @3 :UInt32;       # send chunk N
  }
}

struct ArtifactReply {
  formatVersion @0 :UInt16;
  union {
    have @1 :Data;          # bitmap, bit i (LSB first) = chunk i held; empty = none
    chunk @2 :Data;         # the chunk's bytes
    busy @3 :Text;          # not now; the node named (possibly empty) got this chunk from us lately
    missing @4 :Void;       # not held (any more)
  }
}
