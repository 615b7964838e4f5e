@0xf112739072f2619b;
# The local API between the `starling` CLI and its own daemon, over the Unix
# socket. Framing: a 4-byte little-endian length, then a flat Cap'n Proto
# message (Request from the CLI, Reply from the daemon), one exchange per
# connection. The socket's file permissions are the access control.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("starling::api");

const apiVersion :UInt16 = 1;

struct Tag {
  key @0 :Text;
  value @1 :Text;
}

struct Request {
  version @0 :UInt16;
  # Proceed past a check that asks for it: names of nodes that are no
  # member yet (apply's voters, voters --force-set, commission, decommission).
  force @25 :Bool;
  # rolloutStart: go ahead with a revision that is not the current one.
  yes @26 :Bool;
  # rolloutStart: only say what it would do (the plan).
  dryRun @27 :Bool;
  # rolloutStart: an agent rollout (`starling agent upgrade`): nodes move
  # their starlingd to the revision's `agent` section.
  agent @28 :Bool;
  # rolloutStart: the commissioned nodes it may move (the rest keep what
  # they run); empty: every one.
  only @29 :List(Text);
  # rolloutStart: a batch size instead of the policy's: "2", "25%", "1,50%".
  batch @30 :Text;
  union {
    members @1 :Void;
    join @2 :List(Text);            # seed addresses host:port
    leave @3 :Void;
    forceLeave @4 :ForceLeave;
    tags @5 :TagChange;
    info @6 :Void;
    apply @7 :Apply;
    get @8 :Get;
    history @9 :Void;
    diff @10 :Diff;
    rollback @11 :Rollback;
    lease @12 :Void;
    votersForceSet @13 :List(Text);  # operator override of the lease voters
    nodes @14 :Void;
    freeze @15 :Text;               # the reason
    unfreeze @16 :Void;
    lifecycle @17 :Lifecycle;
    rolloutStart @18 :Text;         # revision; empty for the current one
    rolloutStatus @19 :Void;
    rolloutControl @20 :Text;       # pause | resume | abort
    monitor @21 :Text;              # log level; the reply is a stream of `text` frames (JSON log lines)
    keys @22 :KeyCommand;           # the reply is JSON text (see node/keys.h)
    graph @23 :Void;                # services, the nodes they run on, dependency edges (JSON text)
    artifact @24 :ArtifactCommand;  # the reply is JSON text
    ui @31 :Void;                   # the console's address and token (JSON text)
    event @32 :UserEventRequest;    # the reply is JSON text: name, ltime, bytes
    rtt @34 :List(Text);            # one member (from this node) or two; the reply is JSON text
    query @33 :QueryRequest;        # the reply is a stream of `text` frames, JSON objects: one per ack
                                    # or response as it arrives ("type": "ack" | "response"), then the
                                    # summary ("type": "done")
  }
}

struct UserEventRequest {
  name @0 :Text;
  payload @1 :Data;
  coalesce @2 :Bool;
}

struct QueryRequest {
  name @0 :Text;
  payload @1 :Data;
  nodes @2 :List(Text);             # only these members answer (empty: any)
  tags @3 :List(Tag);               # value: a regex the tag's whole value must match
  timeoutMs @4 :UInt32;             # 0: the default for the cluster's size
  noAck @5 :Bool;
  relayFactor @6 :UInt8;
}

# A desired-state document (YAML or JSON text). Its sections replace the
# same sections of the current state; sections it leaves out stay as they are.
struct Apply {
  document @0 :Text;
  source @1 :Text;                  # where it came from (a file name), for messages
  base @2 :Text;                    # the revision the operator edited; empty when not given
  settings @3 :List(Tag);           # apply-time values for ${NAME} in service params (--set NAME=VALUE)
}

struct ArtifactCommand {
  op @0 :Text;                      # add | ls
  path @1 :Text;                    # add: the file as the client named it (messages, default name);
                                    # the file itself comes open with the request (SCM_RIGHTS)
  name @2 :Text;                    # add: defaults to the file's base name
  version @3 :Text;                 # add: optional
}

struct KeyCommand {
  op @0 :Text;                      # list | install | use | remove
  key @1 :Text;                     # base64; empty for list; or a fingerprint for use and remove
  local @2 :Bool;                   # this node only (out-of-band rotation, SECURITY.md)
}

struct Get {
  revision @0 :Text;                # empty for the current revision
  format @1 :Text;                  # json | yaml
  showParams @2 :Bool;              # service params' values; hidden otherwise (store::HideParams)
}

struct Diff {
  from @0 :Text;
  to @1 :Text;                      # empty for the current revision
  hideParams @2 :Bool;              # service params' values hidden (the console over HTTP)
}

struct Lifecycle {
  nodes @0 :List(Text);
  to @1 :Text;                      # commissioned | decommissioned
}

struct Rollback {
  to @0 :Text;                      # empty for the revision before the current one
}

struct ForceLeave {
  name @0 :Text;
  prune @1 :Bool;
}

struct TagChange {
  set @0 :List(Tag);
  delete @1 :List(Text);
}

struct Member {
  name @0 :Text;
  addr @1 :Text;
  status @2 :Text;                  # alive | suspect | failed | left
  incarnation @3 :UInt64;
  tags @4 :List(Tag);
  protocolMin @5 :UInt16;           # the gossip protocol versions it understands
  protocolMax @6 :UInt16;
  protocolCur @7 :UInt16;           # the version it speaks
  version @8 :Text;                 # the release it runs; empty when it did not say (protocol 1)
  coordinate @9 :Coordinate;        # its network coordinate as this node holds it; unset until probed
}

# Vivaldi (membership/coordinate.h): seconds.
struct Coordinate {
  vec @0 :List(Float64);
  error @1 :Float64;
  adjustment @2 :Float64;
  height @3 :Float64;
}

struct Counter {
  name @0 :Text;
  value @1 :UInt64;
}

struct Info {
  name @0 :Text;
  addr @1 :Text;
  cluster @2 :Text;
  profile @3 :Text;
  incarnation @4 :UInt64;
  healthScore @5 :UInt32;
  protocolVersion @6 :UInt16;       # the gossip protocol version this node speaks
  version @7 :Text;
  membersAlive @8 :UInt32;
  membersSuspect @9 :UInt32;
  membersFailed @10 :UInt32;
  membersLeft @11 :UInt32;
  counters @12 :List(Counter);      # e.g. bad_packets.version, messages_received.ping
  tags @13 :List(Tag);
  dataDir @14 :Text;
  uptimeSeconds @15 :UInt64;
  revision @16 :Text;               # current desired-state revision; empty before the first change
  digest @17 :Text;                 # SHA-256 of the canonical desired state
  entries @18 :UInt64;              # desired-state log entries held (folded or not)
  leaseHolder @19 :Text;            # the coordinator as far as this node knows; empty when none
  leaseBallot @20 :UInt64;
  http @21 :Text;                   # where --http serves /metrics and /v1/; empty when off
  phase @22 :Text;                  # starting | serving | leaving (what /health answers); empty from older daemons
  protocolMin @23 :UInt16;          # the range this node understands
  protocolMax @24 :UInt16;
  build @25 :Text;                  # the commit built (starlingd --version)
  pid @26 :UInt32;                  # the daemon's process id (kept across an agent upgrade's restart)
}

struct Reply {
  error @0 :Text;                   # empty on success; names what was wrong
  errorCode @6 :Text;               # with error: its kind ("invalid argument", "not found", "conflict", ...
                                    # as starling/status.h names them); empty when the daemon did not say
  union {
    none @1 :Void;
    members @2 :List(Member);
    joined @3 :UInt32;              # how many seeds answered
    info @4 :Info;
    text @5 :Text;                  # desired-state commands: JSON (or YAML for get --format yaml)
  }
}
