@0xc4d2e1f0a9b8c7d6;
# Per-node soft state, gossiped by the node it describes (membership's user
# channel): what it has applied and how it is doing. Versioned; a newer
# `version` from the same node replaces an older report.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("starling::nodewire");

struct Output {
  key @0 :Text;
  value @1 :Text;
}

struct NodeReport {
  formatVersion @0 :UInt16;
  name @1 :Text;
  version @2 :UInt64;          # generation << 32 | counter: grows across restarts
  appliedRevision @3 :Text;    # the desired-state revision this node runs; empty when none yet
  healthy @4 :Bool;
  phase @5 :Text;              # idle | applying | verifying | failed | removed ...
  outputs @6 :List(Output);    # service outputs ("service.output" -> value)
  detail @7 :Text;             # the last hook result, for operators
  target @8 :Text;             # the revision it is working on, or failed on
  checks @9 :UInt64;           # passing health checks in this generation (the gate counts a batch
                               # node done on a check from after min_healthy)
  countsChecks @10 :Bool;      # set by daemons that send `checks`; older ones are judged on their last word
}
