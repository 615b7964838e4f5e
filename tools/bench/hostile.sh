#!/usr/bin/env bash
# Hostile clients at full scale against one real node (127.0.0.1 only):
# /health probed 200 times with no hostile client open and again with 1,000
# idle, 100 slowloris and 20 never-reading HTTP clients open; then 500 idle
# and 70 "16 MiB header" connections on the gossip port and 200 idle on the
# API socket while a second node joins and `starling members` is asked.
# Prints the figures, the node's RSS and thread count before, at most and
# after each flood, and what /metrics counted.
#
#   tools/bench/hostile.sh                 # after scripts/build.sh
#   IDLE=1000 SLOWLORIS=100 PROBES=200 tools/bench/hostile.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build}
daemon=$build/node/starlingd cli=$build/tools/cli/starling hostile=$build/tools/flood/starling-hostile
for b in "$daemon" "$cli" "$hostile"; do [[ -x $b ]] || { echo "hostile: $b not built: run scripts/build.sh" >&2; exit 2; }; done
idle=${IDLE:-1000} slowloris=${SLOWLORIS:-100} probes=${PROBES:-200}
dir=$(mktemp -d /tmp/starling-hostile.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

start() {  # name, extra args...
  local name=$1; shift
  "$daemon" --name "$name" --bind 127.0.0.1:0 --data-dir "$dir/$name" --socket "$dir/$name.sock" --profile local \
    --http 127.0.0.1:0 "$@" >"$dir/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do "$cli" --socket "$dir/$name.sock" info >/dev/null 2>&1 && return; sleep 0.1; done
  echo "hostile: $name did not start (log: $dir/$name.log)" >&2; exit 1
}
field() { "$cli" --socket "$dir/$1.sock" info --format json | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
watch_while() {  # pid to watch, pid of the flood: prints the largest RSS (kB) and thread count while it runs
  local rss=0 th=0 r t
  while kill -0 "$2" 2>/dev/null; do
    r=$(status "$1" VmRSS); t=$(status "$1" Threads)
    (( r > rss )) && rss=$r; (( t > th )) && th=$t
    sleep 0.05
  done
  echo "$rss $th"
}

start a
pid=${pids[0]}
http=$(field a http) gossip=$(field a addr)
echo "node a: pid $pid, http $http, gossip $gossip"
curl_metrics() { python3 - "$http" <<'PY'
import sys, urllib.request
for line in urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode().splitlines():
    if line.startswith("starling_connections_"): print("  " + line)
PY
}

echo
echo "== HTTP: $idle idle, $slowloris slowloris, 20 non-readers; $probes /health probes each phase"
rss0=$(status "$pid" VmRSS) th0=$(status "$pid" Threads)
"$hostile" --http "$http" --idle "$idle" --slowloris "$slowloris" --nonreaders 20 --probes "$probes" --hold 1 \
  >"$dir/http.json" 2>/dev/null &
read -r rss_most th_most < <(watch_while "$pid" $!)
cat "$dir/http.json"
sleep 2
echo "RSS ${rss0} kB before, ${rss_most} kB at most, $(status "$pid" VmRSS) kB after;" \
  "threads ${th0} before, ${th_most} at most, $(status "$pid" Threads) after"
curl_metrics

echo
echo "== gossip port: 500 idle, 70 announcing 16 MiB; API socket: 200 idle; node b joins through a"
rss0=$(status "$pid" VmRSS)
"$hostile" --tcp "$gossip" --tcp-idle 500 --tcp-headers 70 --unix "$dir/a.sock" --unix-idle 200 --hold 15 \
  >/dev/null 2>"$dir/tcp.err" &
flood=$!
for _ in $(seq 100); do grep -q ready "$dir/tcp.err" 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s.%N)
start b --join "$gossip"
for _ in $(seq 200); do
  n=$("$cli" --socket "$dir/a.sock" members --format json | python3 -c "import json,sys; print(sum(m['status']=='alive' for m in json.load(sys.stdin)))")
  [[ $n == 2 ]] && break; sleep 0.1
done
t1=$(date +%s.%N)
echo "b joined through a in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s (start included); members on a: $n alive"
read -r rss_most th_most < <(watch_while "$pid" "$flood")
sleep 2
echo "RSS ${rss0} kB before, ${rss_most} kB at most, $(status "$pid" VmRSS) kB after; threads ${th_most} at most"
curl_metrics
