@0xd7e3a1b2c4f50617;
# Keyring commands between daemons (membership's user channel, stream
# exchanges only, so always inside the sealed envelope): the node an operator
# ran `starling keys ...` on asks every live member to do the same and
# answer with its keyring.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("starling::keywire");

const formatVersion :UInt16 = 2;

enum KeyOp {
  list @0;
  install @1;
  use @2;
  remove @3;
}

# A key travels only in an install (`starling keys install KEY` without
# --local), sealed under the sender's primary. `use` and `remove` name the
# key by its fingerprint, and a reply names the member's keys the same way,
# so that a key installed on each node out of band never crosses the network.
struct KeyRequest {
  formatVersion @0 :UInt16;
  op @1 :KeyOp;
  key @2 :Data;           # 32 bytes for install; empty otherwise
  fingerprint @3 :Text;   # for use and remove (Keyring::Fingerprint)
}

struct KeyReply {
  formatVersion @0 :UInt16;
  error @1 :Text;                 # empty when the member did it
  fingerprints @2 :List(Text);    # the member's keyring afterwards, primary first
}
