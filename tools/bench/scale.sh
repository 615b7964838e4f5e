#!/usr/bin/env bash
# Scale by simulation: runs starling-sim at several cluster sizes and draws
# detection time, join convergence and per-node load against N (gnuplot).
#
#   tools/bench/scale.sh [OUT_DIR]        # default docs/bench
#   SIZES="100 1000 3000" SEED=1 tools/bench/scale.sh /tmp/scale
#
# Writes OUT_DIR/scale-<N>.json (one run each), OUT_DIR/scale.dat (the
# table plotted) and OUT_DIR/scale.svg. Memory grows with N squared (every
# simulated node holds the whole member list): about 650 bytes per
# node-member pair at the peak, so 3,000 nodes need ~6 GB.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-docs/bench}
sizes=${SIZES:-"100 300 1000 3000"}
seed=${SEED:-1}
sim=${SIM:-build/tools/sim/starling-sim}
[[ -x $sim ]] || { echo "scale: $sim not built: run scripts/build.sh first" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "scale: gnuplot missing: scripts/install-deps.sh --bench" >&2; exit 2; }
mkdir -p "$out"
for n in $sizes; do
  echo "scale: $n nodes (seed $seed)"
  "$sim" --nodes "$n" --seed "$seed" --format json >"$out/scale-$n.json"
done

python3 - "$out" $sizes <<'PY'
import json, sys
out, sizes = sys.argv[1], sys.argv[2:]
rows = []
for n in sizes:
    d = json.load(open(f"{out}/scale-{n}.json"))
    loss = {w["loss"]: w for w in d["lossy_windows"]}
    rows.append([d["nodes"], d["join_convergence_s"], d["failure_detection_s"], d["messages_per_node_per_s"],
                 d["datagram_bytes_per_node_per_s"] / 1024, d["bytes_per_node_per_s"] / 1024,
                 d["rss_kb_per_node"], loss.get(0.01, {}).get("members_falsely_failed", 0),
                 loss.get(0.05, {}).get("members_falsely_failed", 0), d["wall_seconds"]])
with open(f"{out}/scale.dat", "w") as f:
    f.write("# nodes join_s detect_s msgs_per_node_s datagram_KBps total_KBps rss_kb_per_node "
            "false_failed_1pct false_failed_5pct wall_s\n")
    for r in rows:
        f.write(" ".join(f"{v:.6g}" for v in r) + "\n")
print(open(f"{out}/scale.dat").read(), end="")
PY

gnuplot -e "out='$out/scale.svg'; title='Starling membership in simulation (lan profile, seed $seed)'" \
  tools/bench/against_n.gp - <<GP
set ylabel "virtual seconds"
plot "$out/scale.dat" using 1:3 with linespoints lw 2 pt 7 title "failure detection", \
     "" using 1:2 with linespoints lw 2 pt 5 title "join wave convergence"
set ylabel "per node per second"
set yrange [0:*]
plot "$out/scale.dat" using 1:4 with linespoints lw 2 pt 7 title "messages sent", \
     "" using 1:5 with linespoints lw 2 pt 5 title "datagram KB sent", \
     "" using 1:6 with linespoints lw 2 pt 9 title "KB sent incl. push-pull"
unset multiplot
GP
echo "scale: wrote $out/scale.svg"
