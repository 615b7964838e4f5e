#!/usr/bin/env bash
# scripts/local-cluster.sh as an operator uses it: a 3-node cluster on free
# ports prints each node's HTTP port; --restart 2 brings node 2 back as a new
# process that rejoins; --rotate-key leaves DIR/cluster.key the one key every
# node uses; --stop finds every daemon by its data dir, the restarted one too.
#
#   tests/scripts/local_cluster_test.sh BUILD_DIR     (from the source tree)
set -euo pipefail
export BUILD_DIR=${1:?usage: local_cluster_test.sh BUILD_DIR}
DIR=$(mktemp -d /tmp/stl-lc-XXXXXX)
STARLING="$BUILD_DIR/tools/cli/starling"
fail() { echo "local-cluster test: FAILED: $*" >&2; tail -n 20 "$DIR"/node*.log >&2 || true; exit 1; }
finish() {
  local code=$?
  bash scripts/local-cluster.sh --stop --dir "$DIR" >/dev/null 2>&1 || true
  if ((code == 0)); then rm -rf "$DIR"; else echo "kept $DIR" >&2; fi
}
trap finish EXIT
pids_of_dir() { pgrep -f -- "--data-dir $DIR/node" || true; }

# A base port whose gossip and HTTP ranges are free now (ports of other
# tests come and go: a clash shows as a node that cannot bind, and a retry).
free_base() {
  local p
  for _ in $(seq 20); do
    p=$((20000 + RANDOM % 30000))
    python3 - "$p" <<'PY' && { echo "$p"; return; }
import socket, sys
p = int(sys.argv[1])
for port in (p, p + 1, p + 2, p + 1000, p + 1001, p + 1002):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            sys.exit(1)
        finally:
            s.close()
PY
  done
  fail "no free ports"
}
BASE=$(free_base)

out=$(bash scripts/local-cluster.sh --nodes 3 --base-port "$BASE" --dir "$DIR") || fail "start: $out"
for i in 1 2 3; do
  grep -q "node$i  gossip 127.0.0.1:$((BASE + i - 1))  http http://127.0.0.1:$((BASE + 1000 + i - 1))/" <<<"$out" ||
    fail "the start did not print node$i's ports: $out"
done
[[ "$(stat -c %a "$DIR/cluster.key")" == 600 ]] || fail "cluster.key is not owner-only"
grep -q -- "--encrypt-file" "$DIR/node1.args" || fail "the key is not handed over as a file"
! grep -qFf "$DIR/cluster.key" /proc/[0-9]*/cmdline 2>/dev/null || fail "the key is on a command line"

before=$(pgrep -f -- "--data-dir $DIR/node2 ")
out=$(bash scripts/local-cluster.sh --restart 2 --dir "$DIR") || fail "--restart 2: $out"
after=$(pgrep -f -- "--data-dir $DIR/node2 ")
[[ -n "$after" && "$after" != "$before" ]] || fail "node2 is not a new process ($before -> $after)"
grep -q "node2 is back: every node sees all 3 alive" <<<"$out" || fail "--restart 2 said: $out"

old_key=$(cat "$DIR/cluster.key")
out=$(bash scripts/local-cluster.sh --rotate-key --dir "$DIR") || fail "--rotate-key: $out"
[[ "$(cat "$DIR/cluster.key")" != "$old_key" ]] || fail "cluster.key is unchanged after --rotate-key"
keys=$("$STARLING" --socket "$DIR/node3/starlingd.sock" keys list --format json)
python3 -c 'import json,sys; k=json.loads(sys.argv[1])["keys"]; sys.exit(0 if len(k) == 1 and k[0]["primary"] == 3 else 1)' "$keys" ||
  fail "after --rotate-key the cluster holds: $keys"
# The file's key is the one installed (use is refused for a key not held).
"$STARLING" --socket "$DIR/node3/starlingd.sock" keys use --key-file "$DIR/cluster.key" >/dev/null ||
  fail "cluster.key is not the key the cluster uses"

bash scripts/local-cluster.sh --stop --dir "$DIR" >/dev/null || fail "--stop"
deadline=$((SECONDS + 15))
while [[ -n "$(pids_of_dir)" ]]; do
  ((SECONDS < deadline)) || fail "--stop left daemons running: $(pids_of_dir)"
  sleep 0.2
done
echo "local-cluster test: passed (base port $BASE)"
