#!/usr/bin/env bash
# The whole node stack by simulation: runs `starling-sim --stack` at several
# cluster sizes and tabulates per-node load by protocol (quiet and at 5 %
# loss), a change's propagation, a rollout of every node against its ideal,
# lease failover, memory per node and wall time (gnuplot draws the load).
#
#   tools/bench/stack_scale.sh [OUT_DIR]          # default docs/bench
#   SIZES="100 300 1000" SEED=1 tools/bench/stack_scale.sh /tmp/stack
#   RUN=0 SIZES="100 300 1000 3000" tools/bench/stack_scale.sh docs/bench   # tabulate runs already in OUT_DIR
#
# 3,000 nodes take ~20 minutes and ~6 GB (SIZES="100 300 1000 3000").
#
# Writes OUT_DIR/stack-<N>.json (one run each), OUT_DIR/stack.dat, the
# markdown table OUT_DIR/stack.md and OUT_DIR/stack.svg. Memory grows with
# N squared (every simulated node holds every member, every report and the
# desired state naming every node): the table gives it per node and per
# member held, held (objects, less the simulated disk) and resident.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-docs/bench}
sizes=${SIZES:-"100 300 1000"}
seed=${SEED:-1}
sim=${SIM:-build/tools/sim/starling-sim}
[[ -x $sim ]] || { echo "stack_scale: $sim not built: run scripts/build.sh first" >&2; exit 2; }
mkdir -p "$out"
for n in $sizes; do
  [[ ${RUN:-1} == 0 ]] && break
  echo "stack_scale: $n nodes (seed $seed)"
  "$sim" --stack --nodes "$n" --seed "$seed" --loss-levels 0.01,0.05 --format json >"$out/stack-$n.json"
done

python3 - "$out" $sizes <<'PY'
import json, sys
out, sizes = sys.argv[1], sys.argv[2:]
runs = [json.load(open(f"{out}/stack-{n}.json")) for n in sizes]
protocols = sorted({p for d in runs for p in d["quiet_load"]["by_protocol"]})
def held(d):  # KB per node at the end, objects less the simulated disk
    return d.get("held_kb_per_node_after", {}).get("end", float("nan"))
def disk(d):
    return d.get("simulated_disk_kb_per_node_after", {}).get("end", float("nan"))
def loss(d, p):
    return next(w for w in d["lossy_windows"] if w["loss"] == p)
with open(f"{out}/stack.dat", "w") as f:
    f.write("# nodes quiet_msgs quiet_bytes loss5_msgs loss5_bytes change_max_s rollout_over_ideal lease_s kb_per_node held_kb_end disk_kb_end\n")
    for d in runs:
        q, l = d["quiet_load"]["total"], loss(d, 0.05)["load"]["total"]
        f.write(f"{d['nodes']} {q['messages']:.4g} {q['bytes']:.4g} {l['messages']:.4g} {l['bytes']:.4g} "
                f"{d['change']['max_s']:.4g} {d['rollout']['duration_over_ideal']:.4g} "
                f"{d['lease_failover']['seconds']:.4g} {d['memory_kb_per_node']:.4g} "
                f"{held(d):.4g} {disk(d):.4g}\n")
md = []
md.append("| nodes | quiet msgs / node / s | quiet B / node / s | " +
          " | ".join(f"{p}: msgs, B" for p in protocols) +
          " | 5 % loss: msgs, B / node / s | false failures 1 % / 5 % |")
md.append("|---:" * (4 + len(protocols) + 1) + "|")
for d in runs:
    q = d["quiet_load"]
    cells = []
    for p in protocols:
        t = q["by_protocol"].get(p)
        cells.append(f"{t['messages']:.2f}, {t['bytes']:.0f}" if t else "0, 0")
    l = loss(d, 0.05)["load"]["total"]
    md.append(f"| {d['nodes']:,} | {q['total']['messages']:.2f} | {q['total']['bytes']:.0f} | " + " | ".join(cells) +
              f" | {l['messages']:.2f}, {l['bytes']:.0f} | {loss(d, 0.01)['members_falsely_failed']} / "
              f"{loss(d, 0.05)['members_falsely_failed']} |")
md.append("")
md.append("| nodes | change reached | change median / p99 / max, s | rollout: batches, s (ideal s, ratio) | "
          "lease failover, s | held / node (/ member) | simulated disk / node | resident / node | wall time |")
md.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for d in runs:
    c, r = d["change"], d["rollout"]
    md.append(f"| {d['nodes']:,} | {c['reached']} / {c['of']} | {c['median_s']:.2f} / {c['p99_s']:.2f} / {c['max_s']:.2f} | "
              f"{r['batches']}, {r['duration_s']:.0f} ({r['ideal_s']:.0f}, {r['duration_over_ideal']:.2f}) | "
              f"{d['lease_failover']['seconds']:.1f} | {held(d) / 1024:.2f} MB ({held(d) * 1024 / d['nodes']:.0f} B) | "
              f"{disk(d) / 1024:.2f} MB | {d['memory_kb_per_node_after']['end'] / 1024:.2f} MB | "
              f"{d['wall_seconds']:.0f} s |")
open(f"{out}/stack.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY

if command -v gnuplot >/dev/null; then
  gnuplot -e "out='$out/stack.svg'; title='The whole node stack in simulation (lan profile, seed $seed)'" \
    tools/bench/against_n.gp - <<GP
set ylabel "messages per node per second"
plot "$out/stack.dat" using 1:2 with linespoints lw 2 pt 7 title "quiet", \
     "" using 1:4 with linespoints lw 2 pt 5 title "5 % loss"
set ylabel "bytes per node per second"
set yrange [0:*]
plot "$out/stack.dat" using 1:3 with linespoints lw 2 pt 7 title "quiet", \
     "" using 1:5 with linespoints lw 2 pt 5 title "5 % loss"
unset multiplot
GP
  echo "stack_scale: wrote $out/stack.svg"
fi
