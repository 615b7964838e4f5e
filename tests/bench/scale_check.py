#!/usr/bin/env python3
"""Runs starling-sim at two sizes and checks what the scale figures in
docs/BENCHMARKS.md rest on: both join waves converge, a quiet node sends the
same number of messages per second whatever N (one ping, one ack), nobody
alive is declared failed at 1 % or 5 % loss, and a crash is detected within
the suspicion bound. Then the whole node stack (--stack) at two sizes: all
protocols together send the same messages and bytes per node per second
whatever N (within 20 %), twice that at most under 5 % loss, a change reaches
every node, a rollout of every node ends within 1.5 times its ideal, and a
crashed lease holder is replaced.

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

stack = {}
for n in (50, 300):
    out = subprocess.run([sim, "--stack", "--nodes", str(n), "--seed", "3", "--window", "60", "--loss-levels",
                          "0.05", "--loss-window", "30", "--hook-time", "2", "--min-healthy", "2",
                          "--format", "json"], check=False, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.exit(f"starling-sim --stack --nodes {n} exited {out.returncode}:\n{out.stdout}{out.stderr}")
    stack[n] = json.loads(out.stdout)
for n, d in stack.items():
    ch, ro, lease = d["change"], d["rollout"], d["lease_failover"]
    if ch["reached"] != n:
        failures.append(f"stack, {n} nodes: the change reached {ch['reached']} of {n}")
    if ro["state"] != "succeeded" or ro["duration_over_ideal"] > 1.5:
        failures.append(f"stack, {n} nodes: rollout {ro['state']} in {ro['duration_s']} s, "
                        f"{ro['duration_over_ideal']:.2f} times its ideal")
    if lease["seconds"] > 30:
        failures.append(f"stack, {n} nodes: a new holder after {lease['seconds']} s")
    for w in d["lossy_windows"]:
        if w["members_falsely_failed"] != 0:
            failures.append(f"stack, {n} nodes: {w['members_falsely_failed']} live members declared failed "
                            f"at loss {w['loss']}")
    print(f"stack, {n} nodes: quiet {d['quiet_load']['total']['messages']:.2f} msgs/node/s, "
          f"{d['quiet_load']['total']['bytes']:.0f} B/node/s; at 5 % loss "
          f"{d['lossy_windows'][0]['load']['total']['messages']:.2f} msgs/node/s; change max {ch['max_s']} s; "
          f"rollout {ro['duration_s']} s ({ro['duration_over_ideal']:.2f} x ideal); new holder in "
          f"{lease['seconds']} s; {d['memory_kb_per_node']:.0f} KB/node")
for what in ("messages", "bytes"):
    small, large = (stack[n]["quiet_load"]["total"][what] for n in (50, 300))
    if abs(large - small) > 0.2 * small:
        failures.append(f"stack: quiet {what} per node per s not flat: {small:.1f} at 50 nodes, {large:.1f} at 300")
small, large = (stack[n]["lossy_windows"][0]["load"]["total"]["messages"] for n in (50, 300))
if large > 2 * small:
    failures.append(f"stack: messages per node per s at 5 % loss grow: {small:.2f} at 50 nodes, {large:.2f} at 300")
if failures:
    sys.exit("\n".join(failures))
