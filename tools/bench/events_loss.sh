#!/usr/bin/env bash
# User events under datagram loss, Starling and Serf side by side.
#
# N starlingd, then N `serf agent`, on 127.0.0.1 inside a network namespace
# of their own whose loopback drops LOSS % of UDP datagrams (nftables
# `numgen random`; TCP is left alone, as both send user events over UDP
# gossip). Once each cluster has formed, E events are sent, ten a second,
# from random agents (`starling event`, `serf event -coalesce=false`); every
# agent's user-event handler appends the event's name to a file. After the
# last event each side gets SETTLE seconds; then the figures: how many
# agents got every event, the fewest events any agent got, deliveries out of
# N * E.
#
#   tools/bench/events_loss.sh [--build DIR] [--nodes 10] [--events 100] [--loss 5] [--settle 30]
#
# Needs root (for the namespace), nft, and serf (scripts/install-deps.sh
# --bench). Exit 0 when Starling delivered every event to every agent; 77
# when something it needs is missing.
set -euo pipefail

BUILD=build NODES=10 EVENTS=100 LOSS=5 SETTLE=30
while (($#)); do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --events) EVENTS=$2; shift 2 ;;
    --loss) LOSS=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "events_loss: unknown option $1" >&2; exit 2 ;;
  esac
done
BUILD=$(cd "$BUILD" && pwd)
STARLINGD=$BUILD/node/starlingd STARLING=$BUILD/tools/cli/starling
for tool in serf nft unshare; do
  command -v "$tool" >/dev/null || { echo "events_loss: $tool is not installed; skipped" >&2; exit 77; }
done
[[ -x $STARLINGD && -x $STARLING ]] || { echo "events_loss: no starlingd/starling in $BUILD" >&2; exit 2; }

if [[ -z ${EVENTS_LOSS_INSIDE:-} ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "events_loss: needs root for its network namespace; skipped" >&2; exit 77; }
  export EVENTS_LOSS_INSIDE=1
  exec unshare --net -- "$0" --build "$BUILD" --nodes "$NODES" --events "$EVENTS" --loss "$LOSS" --settle "$SETTLE"
fi

ip link set lo up
ROOT=$(mktemp -d /tmp/events-loss.XXXXXX)
chmod 700 "$ROOT"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$ROOT"
}
trap cleanup EXIT

# One handler for both: the event's name, one line per delivery, in a file per agent.
mkdir -m 700 "$ROOT/handlers" "$ROOT/got"
cat > "$ROOT/handlers/record" <<EOF
#!/bin/sh
echo "\${STARLING_USER_EVENT:-\$SERF_USER_EVENT}" >> "$ROOT/got/\${STARLING_SELF_NAME:-\$SERF_SELF_NAME}"
EOF
chmod 700 "$ROOT/handlers/record"

loss_on() {
  nft add table inet loss
  nft add chain inet loss out '{ type filter hook output priority 0; }'
  nft add rule inet loss out meta l4proto udp numgen random mod 100 lt "$LOSS" drop
}
loss_off() { nft delete table inet loss 2>/dev/null || true; }

wait_members() {  # $1: command printing the member list; waits for NODES alive lines
  for _ in $(seq 1 600); do
    [[ $(eval "$1" 2>/dev/null | grep -c alive) -ge $NODES ]] && return 0
    sleep 0.1
  done
  echo "events_loss: the cluster did not form" >&2
  return 1
}

# Figures for one side: agents with every event, the fewest any got, all deliveries.
report() {  # $1: side, $2: prefix of agent names, $3: seconds until the counts were final
  local full=0 fewest=$EVENTS total=0
  for i in $(seq 0 $((NODES - 1))); do
    local n=0
    [[ -f $ROOT/got/$2$i ]] && n=$(sort -u "$ROOT/got/$2$i" | grep -c . || true)
    ((n == EVENTS)) && full=$((full + 1))
    ((n < fewest)) && fewest=$n
    total=$((total + n))
  done
  printf '%-9s %d/%d agents got all %d events; fewest any agent got: %d; deliveries %d/%d (%s %%); waited %ss after the last\n' \
    "$1" "$full" "$NODES" "$EVENTS" "$fewest" "$total" $((NODES * EVENTS)) \
    "$(awk -v t="$total" -v a=$((NODES * EVENTS)) 'BEGIN { printf "%.1f", 100 * t / a }')" "$3" >&2
  echo "$full"
}

# Waits until every agent has every event or SETTLE seconds pass; prints the seconds waited.
settle() {  # $1: prefix
  local start=$SECONDS
  while ((SECONDS - start < SETTLE)); do
    local done=1
    for i in $(seq 0 $((NODES - 1))); do
      [[ -f $ROOT/got/$1$i && $(sort -u "$ROOT/got/$1$i" | grep -c .) -eq $EVENTS ]] || { done=0; break; }
    done
    ((done)) && break
    sleep 0.5
  done
  echo $((SECONDS - start))
}

send_all() {  # $1: function sending event NAME from agent I
  local rnd=12345
  for k in $(seq 1 "$EVENTS"); do
    rnd=$(((rnd * 1103515245 + 12345) % 2147483648))
    "$1" $((rnd % NODES)) "e-$k"
    sleep 0.1
  done
}

# ---- Starling ---------------------------------------------------------------------------------
for i in $(seq 0 $((NODES - 1))); do
  mkdir -m 700 "$ROOT/t$i"
  args=(--name "t$i" --bind "127.0.0.1:$((21000 + i))" --data-dir "$ROOT/t$i" --profile lan --http off
        --log-level warn --event-handler "user=$ROOT/handlers/record")
  ((i > 0)) && args+=(--join 127.0.0.1:21000)
  "$STARLINGD" "${args[@]}" >"$ROOT/t$i.log" 2>&1 &
  pids+=($!)
done
wait_members "$STARLING --socket $ROOT/t0/starlingd.sock members"
starling_send() { "$STARLING" --socket "$ROOT/t$1/starlingd.sock" event "$2" payload >/dev/null; }
loss_on
send_all starling_send
waited=$(settle t)
loss_off
starling_full=$(report starling t "$waited")
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
pids=()

# ---- Serf -------------------------------------------------------------------------------------
for i in $(seq 0 $((NODES - 1))); do
  args=(agent -node="s$i" -bind="127.0.0.1:$((22000 + i))" -rpc-addr="127.0.0.1:$((23000 + i))" -profile=lan
        -log-level=warn -event-handler="user=$ROOT/handlers/record")
  ((i > 0)) && args+=(-retry-join=127.0.0.1:22000 -retry-interval=1s)
  serf "${args[@]}" >"$ROOT/s$i.log" 2>&1 &
  pids+=($!)
done
wait_members "serf members -rpc-addr=127.0.0.1:23000"
serf_send() { serf event -rpc-addr="127.0.0.1:$((23000 + $1))" -coalesce=false "$2" payload >/dev/null; }
loss_on
send_all serf_send
waited=$(settle s)
loss_off
report serf s "$waited" >/dev/null

[[ $starling_full -eq $NODES ]]
