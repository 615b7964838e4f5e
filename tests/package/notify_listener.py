#!/usr/bin/env python3
"""Stands in for systemd's notify socket: binds a datagram socket at PATH
(writable by every user, as systemd's is, so a daemon run as its own user
can reach it) and appends each message it receives to OUT as one line,
newlines shown as '|', after a first line "listening". Stops after SECONDS
(or when killed).

    notify_listener.py PATH OUT [--seconds N]
"""
import argparse
import os
import socket
import time

ap = argparse.ArgumentParser()
ap.add_argument("path")
ap.add_argument("out")
ap.add_argument("--seconds", type=float, default=600)
a = ap.parse_args()
try:
    os.unlink(a.path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(a.path)
os.chmod(a.path, 0o666)
deadline = time.monotonic() + a.seconds
with open(a.out, "a", buffering=1) as out:
    out.write("listening\n")
    while time.monotonic() < deadline:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        out.write(data.decode(errors="replace").replace("\n", "|") + "\n")
