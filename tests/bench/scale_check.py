#!/usr/bin/env python3
"""Runs starling-sim at two sizes and checks what the scale figures in
docs/BENCHMARKS.md rest on: both join waves converge, a quiet node sends the
same number of messages per second whatever N (one ping, one ack), nobody
alive is declared failed at 1 % or 5 % loss, and a crash is detected within
the suspicion bound.

usage: scale_check.py STARLING_SIM
"""
import json
import math
import subprocess
import sys

sim = sys.argv[1]
runs = {}
for n in (50, 400):
    out = subprocess.run([sim, "--nodes", str(n), "--seed", "3", "--window", "120", "--loss-window", "30",
                          "--format", "json"], check=False, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"starling-sim --nodes {n} exited {out.returncode}:\n{out.stdout}{out.stderr}")
    runs[n] = json.loads(out.stdout)

failures = []
for n, d in runs.items():
    if not d["join_converged"] or not d["quiet"]:
        failures.append(f"{n} nodes: join wave did not converge and quieten")
    for w in d["lossy_windows"]:
        if w["members_falsely_failed"] != 0:
            failures.append(f"{n} nodes: {w['members_falsely_failed']} live members declared failed at loss {w['loss']}")
    # Probed within ~2 periods, at most max suspicion (6 * 4 * log10 n), plus gossip.
    bound = 2 + 6 * 4 * max(1.0, math.log10(n)) + 2
    if not d["failure_detected"] or d["failure_detection_s"] > bound:
        failures.append(f"{n} nodes: crash detected in {d['failure_detection_s']} s (bound {bound:.1f} s)")
    if abs(d["messages_per_node_per_s"] - 2.0) > 0.2:
        failures.append(f"{n} nodes: {d['messages_per_node_per_s']:.2f} messages per node per s when quiet, want ~2")
small, large = runs[50]["messages_per_node_per_s"], runs[400]["messages_per_node_per_s"]
if abs(large - small) > 0.2 * small:
    failures.append(f"per-node message rate not flat: {small:.2f} at 50 nodes, {large:.2f} at 400")
for n, d in runs.items():
    print(f"{n} nodes: join {d['join_convergence_s']} s, detect {d['failure_detection_s']} s, "
          f"{d['messages_per_node_per_s']:.2f} msgs/node/s, {d['bytes_per_node_per_s']:.0f} B/node/s, "
          f"{d['rss_kb_per_node']:.0f} KB/node")
if failures:
    sys.exit("\n".join(failures))
