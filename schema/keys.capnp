@0xd7e3a1b2c4f50617;
# Keyring commands between daemons (membership's user channel, stream
# exchanges only, so always inside the sealed envelope): the node an operator
# ran `starling keys ...` on asks every live member to do the same and
# answer with its keyring.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("starling::keywire");

const formatVersion :UInt16 = 1;

enum KeyOp {
  list @0;
  install @1;
  use @2;
  remove @3;
}

struct KeyRequest {
  formatVersion @0 :UInt16;
  op @1 :KeyOp;
  key @2 :Data;           # 32 bytes; empty for list
}

struct KeyReply {
  formatVersion @0 :UInt16;
  error @1 :Text;         # empty when the member did it
  keys @2 :List(Data);    # the member's keyring afterwards, primary first
}
