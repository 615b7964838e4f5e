#!/usr/bin/env bash
# Starts a local Starling cluster: N starlingd daemons on 127.0.0.1, joined
# through node1, with the `local` timing profile. Waits until every node sees
# every other alive, then prints the member list, each node's HTTP port and
# how to use it.
#
#   scripts/local-cluster.sh [--nodes N] [--base-port P] [--dir DIR] [--hooks-dir H] [--clear]
#   scripts/local-cluster.sh --restart I [--dir DIR]     restart node I (a graceful leave, then a rejoin)
#   scripts/local-cluster.sh --rotate-key [--dir DIR]    a new cluster key on every node, into DIR/cluster.key
#   scripts/local-cluster.sh --stop [--dir DIR]
#
# Node i listens on 127.0.0.1:(P + i - 1) for UDP and TCP and serves HTTP
# (the web console at /ui/, with its actions on: `starling ui url` prints the
# login link; /metrics, /health, /v1/...) on 127.0.0.1:(P + 1000 + i - 1); it keeps its data in
# DIR/node<i>/ and logs to DIR/node<i>.log; its command line is kept in
# DIR/node<i>.args for --restart. --stop finds the daemons by their data dirs
# (also those restarted since, by --restart or by hand): it sends SIGTERM (a
# graceful leave), then SIGKILL to any daemon still running after 10 s.
# Node 1 has the tag roles=db, the others roles=web. Every node runs hooks
# from H (default: examples/hooks, the example hooks the demo's desired state
# names).
# Gossip is encrypted: the first start makes a cluster key with `starling
# keygen` into DIR/cluster.key (mode 0600), which every daemon reads with
# --encrypt-file; --rotate-key replaces it on the live cluster (installed on
# each node alone, then used and the old one removed cluster-wide) and keeps
# DIR/cluster.key the key in use. --clear runs without one (the daemons warn
# about it).
# Binaries come from $BUILD_DIR (default: build).
set -euo pipefail

BUILD_DIR=${BUILD_DIR:-build}
NODES=5
BASE_PORT=7946
DIR=.local-cluster
STOP=0
CLEAR=0
RESTART=""
ROTATE=0
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
    --restart) RESTART=${2:?--restart needs a node number}; shift 2 ;;
    --rotate-key) ROTATE=1; shift ;;
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

# The starlingd processes whose --data-dir is DIR/node<i> (any i, or the one
# given), from /proc: the PIDs this script started, and any started since on
# the same data dirs.
daemon_pids() {
  local want=${1:-} abs proc pid
  [[ -d "$DIR" ]] || return 0
  abs=$(cd "$DIR" && pwd)
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    local -a argv=()
    mapfile -d '' -t argv <"$proc/cmdline" 2>/dev/null || continue
    ((${#argv[@]})) || continue
    [[ "$(basename "${argv[0]}")" == starlingd* ]] || continue
    local k
    for ((k = 1; k + 1 < ${#argv[@]}; k++)); do
      if [[ "${argv[k]}" == --data-dir ]]; then
        if [[ -n "$want" ]]; then
          [[ "${argv[k + 1]}" == "$abs/node$want" ]] && echo "$pid"
        elif [[ "${argv[k + 1]}" =~ ^"$abs"/node[0-9]+$ ]]; then
          echo "$pid"
        fi
        break
      fi
    done
  done
  return 0
}
alive_pids() { daemon_pids; }

# SIGTERM to the PIDs (a graceful leave), SIGKILL to any still there after 10 s.
stop_pids() {
  local pids="$1" deadline=$((SECONDS + 10)) left
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  while :; do
    left=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && left+=" $p"; done
    [[ -z "$left" ]] && return 0
    ((SECONDS < deadline)) || break
    sleep 0.2
  done
  echo "local-cluster: killing $(echo $left | wc -w) daemon(s) that did not exit in time"
  # shellcheck disable=SC2086
  kill -KILL $left 2>/dev/null || true
}

stop_cluster() {
  local pids
  pids=$(alive_pids)
  if [[ -z "$pids" ]]; then
    echo "local-cluster: nothing running (no starlingd with a data dir in $DIR)"
    rm -f "$PIDFILE"
    return 0
  fi
  echo "local-cluster: stopping $(echo "$pids" | wc -l) daemon(s) gracefully"
  stop_pids "$pids"
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
socket_of() { echo "$DIR/node$1/starlingd.sock"; }
node_log_tail() { echo "--- $DIR/node$1.log (last lines):" >&2; tail -n 20 "$DIR/node$1.log" >&2 || true; }

# Counts the members node $1 sees alive (0 when it does not answer yet).
alive_count() {
  local out
  out=$("$STARLING" --socket "$(socket_of "$1")" --timeout 2 members --status alive 2>/dev/null) || { echo 0; return; }
  echo $(($(echo "$out" | wc -l) - 1))
}

# The nodes of the running cluster: those with a data dir, counted.
node_count() { local n=0; while [[ -d "$DIR/node$((n + 1))" ]]; do n=$((n + 1)); done; echo "$n"; }

# Prints each node's gossip address and HTTP address (from `starling info`).
print_ports() {
  local i http addr
  echo "HTTP (metrics, health, the console at /ui/):"
  for ((i = 1; i <= $1; i++)); do
    read -r addr http < <("$STARLING" --socket "$(socket_of "$i")" --timeout 2 info --format json 2>/dev/null |
      python3 -c 'import json,sys; i=json.load(sys.stdin); print(i["addr"], i.get("http") or "off")' 2>/dev/null ||
      echo "? ?")
    echo "  node$i  gossip $addr  http http://$http/"
  done
}

if [[ -n "$RESTART" ]]; then
  [[ "$RESTART" =~ ^[1-9][0-9]*$ && -f "$DIR/node$RESTART.args" ]] ||
    die "--restart $RESTART: no node$RESTART in $DIR (start the cluster first)"
  DIR=$(cd "$DIR" && pwd)
  total=$(node_count)
  pids=$(daemon_pids "$RESTART")
  if [[ -n "$pids" ]]; then
    echo "local-cluster: stopping node$RESTART (pid $(echo $pids)) gracefully"
    stop_pids "$pids"
  fi
  mapfile -t args <"$DIR/node$RESTART.args"
  nohup "$STARLINGD" "${args[@]}" >>"$DIR/node$RESTART.log" 2>&1 </dev/null &
  started=$!
  # Nodes stopped by hand are neither waited for nor counted.
  running=()
  for ((i = 1; i <= total; i++)); do
    [[ $i == "$RESTART" || -n "$(daemon_pids "$i")" ]] && running+=("$i")
  done
  total=${#running[@]}
  echo "local-cluster: node$RESTART restarted (pid $started), waiting until every node sees all $total alive"
  # The others saw node$RESTART leave; until each has heard it is back, a
  # command through that node would still answer without it.
  deadline=$((SECONDS + CONVERGE_TIMEOUT))
  for i in "${running[@]}"; do
    until (($(alive_count "$i") >= total)); do
      kill -0 "$started" 2>/dev/null || { node_log_tail "$RESTART"; die "node$RESTART exited while starting (its log is above)"; }
      ((SECONDS < deadline)) || { node_log_tail "$i"; die "node$i sees $(alive_count "$i") of $total members alive ${CONVERGE_TIMEOUT} s after node$RESTART restarted"; }
      sleep 0.2
    done
  done
  echo "local-cluster: node$RESTART is back: every node sees all $total alive"
  exit 0
fi

if ((ROTATE)); then
  [[ -s "$DIR/cluster.key" ]] || die "--rotate-key: no $DIR/cluster.key (a cluster started with --clear has no key)"
  DIR=$(cd "$DIR" && pwd)
  total=$(node_count)
  ((total > 0)) || die "--rotate-key: no nodes in $DIR"
  (umask 077 && "$STARLING" keygen >"$DIR/cluster.key.new" 2>/dev/null)
  # Installed on each node alone (it never crosses the network), then used
  # and the old key removed cluster-wide; the file follows at once, so that a
  # node started from scratch later gets the key in use.
  for ((i = 1; i <= total; i++)); do
    "$STARLING" --socket "$(socket_of "$i")" keys install --local --key-file "$DIR/cluster.key.new" >/dev/null ||
      die "--rotate-key: node$i did not take the new key ($DIR/cluster.key is unchanged; $DIR/cluster.key.new is the new one)"
  done
  "$STARLING" --socket "$(socket_of 1)" keys use --key-file "$DIR/cluster.key.new" >/dev/null
  "$STARLING" --socket "$(socket_of 1)" keys remove --key-file "$DIR/cluster.key" >/dev/null
  mv "$DIR/cluster.key.new" "$DIR/cluster.key"
  echo "local-cluster: every node uses the new key; $DIR/cluster.key holds it"
  "$STARLING" --socket "$(socket_of 1)" keys list
  exit 0
fi

[[ -z "$(alive_pids)" ]] || die "a cluster from $DIR is already running; stop it with: $0 --stop"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
[[ -d "$HOOKS_DIR" ]] || die "--hooks-dir $HOOKS_DIR is not a directory"
HOOKS_DIR=$(cd "$HOOKS_DIR" && pwd)
PIDFILE="$DIR/pids"
: >"$PIDFILE"
(($(socket_of "$NODES" | wc -c) < 100)) || die "socket paths under $DIR are too long for Unix sockets; use --dir with a shorter path"

# Node 1 runs the database role, the others the web role (the roles the
# example desired state uses).
role_of() { if (($1 == 1)); then echo db; else echo web; fi; }

start_node() {
  local i=$1 port=$((BASE_PORT + $1 - 1))
  local args=(--name "node$i" --bind "127.0.0.1:$port" --data-dir "$DIR/node$i" --socket "$(socket_of "$i")"
              --profile local --cluster local-cluster --hooks-dir "$HOOKS_DIR" --tag "roles=$(role_of "$i")"
              --http "127.0.0.1:$((HTTP_BASE_PORT + $1 - 1))" --ui-write)
  ((i > 1)) && args+=(--join "127.0.0.1:$BASE_PORT")
  ((CLEAR)) || args+=(--encrypt-file "$DIR/cluster.key")
  printf '%s\n' "${args[@]}" >"$DIR/node$i.args"
  nohup "$STARLINGD" "${args[@]}" >>"$DIR/node$i.log" 2>&1 </dev/null &
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
echo
print_ports "$NODES"
cat <<EOT

Use the CLI against node1 (any node's socket works the same way):
  export STARLING_SOCKET=$(socket_of 1)
  $STARLING members
  $STARLING info
  $STARLING tags --set roles=web
Logs: $DIR/node<i>.log
Restart node 2: $0 --restart 2$( [[ "$DIR" != "$(pwd)/.local-cluster" ]] && echo " --dir $DIR")
Stop: $stop_hint
EOT
