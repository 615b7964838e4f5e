#!/usr/bin/env bash
# Starts a local Starling cluster: N starlingd daemons on 127.0.0.1, joined
# through node1, with the `local` timing profile. Waits until every node sees
# every other alive, then prints the member list and how to use it.
#
#   scripts/local-cluster.sh [--nodes N] [--base-port P] [--dir DIR] [--hooks-dir H] [--clear]
#   scripts/local-cluster.sh --stop [--dir DIR]
#
# Node i listens on 127.0.0.1:(P + i - 1) for UDP and TCP and serves HTTP
# (the web console at /ui/, with its actions on: `starling ui url` prints the
# login link; /metrics, /health, /v1/...) on 127.0.0.1:(P + 1000 + i - 1); it keeps its data in
# DIR/node<i>/ and logs to DIR/node<i>.log. The PIDs go to DIR/pids, which
# --stop reads: it sends SIGTERM (a graceful leave), then SIGKILL to any
# daemon still running after 10 s. Node 1 has the tag roles=db, the others
# roles=web. Every node runs hooks from H (default:
# examples/hooks, the example hooks the demo's desired state names).
# Gossip is encrypted: the first start makes a cluster key with `starling
# keygen` into DIR/cluster.key (mode 0600) and hands it to every daemon through
# STARLING_ENCRYPT_KEY; --clear runs without one (the daemons warn about it).
# Binaries come from $BUILD_DIR (default: build).
set -euo pipefail

BUILD_DIR=${BUILD_DIR:-build}
NODES=5
BASE_PORT=7946
DIR=.local-cluster
STOP=0
CLEAR=0
HOOKS_DIR=examples/hooks
CONVERGE_TIMEOUT=30

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "local-cluster: $*" >&2; exit 1; }

while (($#)); do
  case "$1" in
    --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
    --base-port) BASE_PORT=${2:?--base-port needs a port}; shift 2 ;;
    --dir) DIR=${2:?--dir needs a path}; shift 2 ;;
    --hooks-dir) HOOKS_DIR=${2:?--hooks-dir needs a path}; shift 2 ;;
    --stop) STOP=1; shift ;;
    --clear) CLEAR=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer, not '$NODES'"
if ! [[ "$BASE_PORT" =~ ^[0-9]+$ ]] || ((BASE_PORT == 0 || BASE_PORT + 1000 + NODES - 1 > 65535)); then
  die "--base-port '$BASE_PORT' leaves no room for $NODES ports"
fi
HTTP_BASE_PORT=$((BASE_PORT + 1000))

PIDFILE="$DIR/pids"

alive_pids() {
  [[ -f "$PIDFILE" ]] || return 0
  local pid
  while read -r pid; do
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  done <"$PIDFILE"
  return 0
}

stop_cluster() {
  local pids
  pids=$(alive_pids)
  if [[ -z "$pids" ]]; then
    echo "local-cluster: nothing running (no live PIDs in $PIDFILE)"
    rm -f "$PIDFILE"
    return 0
  fi
  echo "local-cluster: stopping $(echo "$pids" | wc -l) daemon(s) gracefully"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while [[ -n "$(alive_pids)" ]] && ((SECONDS < deadline)); do sleep 0.2; done
  pids=$(alive_pids)
  if [[ -n "$pids" ]]; then
    echo "local-cluster: killing $(echo "$pids" | wc -l) daemon(s) that did not exit in time"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  echo "local-cluster: stopped (data and logs kept in $DIR)"
}

if ((STOP)); then
  stop_cluster
  exit 0
fi

STARLINGD="$BUILD_DIR/node/starlingd"
STARLING="$BUILD_DIR/tools/cli/starling"
[[ -x "$STARLINGD" && -x "$STARLING" ]] ||
  die "no binaries in $BUILD_DIR (build first: cmake -S . -B $BUILD_DIR && cmake --build $BUILD_DIR -j2, or set BUILD_DIR)"
[[ -z "$(alive_pids)" ]] || die "a cluster from $DIR is already running; stop it with: $0 --stop"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
[[ -d "$HOOKS_DIR" ]] || die "--hooks-dir $HOOKS_DIR is not a directory"
HOOKS_DIR=$(cd "$HOOKS_DIR" && pwd)
PIDFILE="$DIR/pids"
: >"$PIDFILE"
socket_of() { echo "$DIR/node$1/starlingd.sock"; }
(($(socket_of "$NODES" | wc -c) < 100)) || die "socket paths under $DIR are too long for Unix sockets; use --dir with a shorter path"

node_log_tail() { echo "--- $DIR/node$1.log (last lines):" >&2; tail -n 20 "$DIR/node$1.log" >&2 || true; }

# Counts the members node $1 sees alive (0 when it does not answer yet).
alive_count() {
  local out
  out=$("$STARLING" --socket "$(socket_of "$1")" --timeout 2 members --status alive 2>/dev/null) || { echo 0; return; }
  echo $(($(echo "$out" | wc -l) - 1))
}

# Node 1 runs the database role, the others the web role (the roles the
# example desired state uses).
role_of() { if (($1 == 1)); then echo db; else echo web; fi; }

start_node() {
  local i=$1 port=$((BASE_PORT + $1 - 1))
  local args=(--name "node$i" --bind "127.0.0.1:$port" --data-dir "$DIR/node$i" --socket "$(socket_of "$i")"
              --profile local --cluster local-cluster --hooks-dir "$HOOKS_DIR" --tag "roles=$(role_of "$i")"
              --http "127.0.0.1:$((HTTP_BASE_PORT + $1 - 1))" --ui-write)
  ((i > 1)) && args+=(--join "127.0.0.1:$BASE_PORT")
  if ((CLEAR)); then
    nohup "$STARLINGD" "${args[@]}" >>"$DIR/node$i.log" 2>&1 </dev/null &
  else
    STARLING_ENCRYPT_KEY=$(cat "$DIR/cluster.key") nohup "$STARLINGD" "${args[@]}" >>"$DIR/node$i.log" 2>&1 </dev/null &
  fi
  echo $! >>"$PIDFILE"
}

# Fails (after printing the node's log) when node $1 has exited.
check_running() {
  local pid
  pid=$(sed -n "$1p" "$PIDFILE")
  if ! kill -0 "$pid" 2>/dev/null; then
    node_log_tail "$1"
    stop_cluster >&2
    die "node$1 exited during start-up (see its log above)"
  fi
}

if ((!CLEAR)) && [[ ! -s "$DIR/cluster.key" ]]; then
  (umask 077 && "$STARLING" keygen >"$DIR/cluster.key" 2>/dev/null)
fi
echo "local-cluster: starting $NODES nodes on 127.0.0.1:$BASE_PORT..$((BASE_PORT + NODES - 1)) in $DIR"
start_node 1
# The seed must answer before the others join, or they wait out a join retry.
deadline=$((SECONDS + 10))
until (($(alive_count 1) >= 1)); do
  check_running 1
  ((SECONDS < deadline)) || { node_log_tail 1; die "node1 did not come up within 10 s"; }
  sleep 0.1
done
for ((i = 2; i <= NODES; i++)); do start_node "$i"; done

deadline=$((SECONDS + CONVERGE_TIMEOUT))
for ((i = 1; i <= NODES; i++)); do
  until (($(alive_count "$i") == NODES)); do
    check_running "$i"
    if ((SECONDS >= deadline)); then
      node_log_tail "$i"
      die "node$i sees $(alive_count "$i") of $NODES members alive after ${CONVERGE_TIMEOUT} s; still running, stop with: $0 --stop"
    fi
    sleep 0.2
  done
done

stop_hint="$0 --stop"
if [[ "$DIR" != "$(pwd)/.local-cluster" ]]; then stop_hint+=" --dir $DIR"; fi
echo "local-cluster: all $NODES nodes see each other alive$( ((CLEAR)) && echo " (gossip in the clear)" || echo ", gossip encrypted with the key in $DIR/cluster.key")"
echo
"$STARLING" --socket "$(socket_of 1)" members
cat <<EOT

Use the CLI against node1 (any node's socket works the same way):
  export STARLING_SOCKET=$(socket_of 1)
  $STARLING members
  $STARLING info
  $STARLING tags --set roles=web
Logs: $DIR/node<i>.log
Stop: $stop_hint
EOT
