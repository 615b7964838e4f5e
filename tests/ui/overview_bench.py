#!/usr/bin/python3
"""How fast the console's overview renders and filters a large cluster, in
headless Debian chromium: the pages of node/ui are served with a synthetic
cluster of --nodes nodes behind the same /v1 paths a starlingd serves.

    overview_bench.py --ui node/ui [--nodes 1000]

Prints: the time from navigation to the first overview showing every node,
the render itself, and the time to filter by text and by a status chip, each
with the number of rows shown (checked against the synthetic data).
Exit 77 (skipped) when chromium, chromedriver or selenium is missing.
"""
import argparse
import http.server
import json
import os
import sys
import threading
import time

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
except ImportError:
    print("skipped: python3-selenium is not installed")
    sys.exit(77)


def synthetic(n):
    statuses = ["alive"] * 17 + ["suspect", "failed", "left"]
    nodes, members, phases = [], [], []
    for i in range(n):
        name = f"node-{i:05d}"
        status = statuses[i % len(statuses)]
        role = ["web", "db", "cache"][i % 3]
        applied = "a" * 12 if i % 4 else "b" * 12
        nodes.append({"name": name, "lifecycle": "commissioned" if i % 10 else "discovered", "status": status,
                      "addr": f"10.0.{i // 250}.{i % 250}:7946", "roles": [role], "tags": {"roles": role, "zone": "z" + str(i % 5)},
                      "applied_revision": applied, "healthy": status == "alive", "phase": "idle", "outputs": {},
                      "version": "0.1.0", "detail": ""})
        members.append({"name": name, "addr": f"10.0.{i // 250}.{i % 250}:7946", "status": status, "tags": {"roles": role},
                        "incarnation": 1, "version": "0.1.0", "protocol": {"min": 1, "max": 2, "current": 2}})
        phases.append({"name": name, "phase": "done" if i % 4 else "pending", "batch": 1 if i % 4 else 0,
                       "applied_revision": applied, "healthy": status == "alive", "agent_phase": "idle",
                       "reachable": status == "alive", "detail": ""})
    return {
        "/v1/console": {"name": "node-00000", "addr": "10.0.0.0:7946", "cluster": "big", "profile": "lan",
                        "encrypted": False, "write": False, "streams": 1},
        "/v1/info": {"name": "node-00000", "lease": {"holder": "node-00001", "ballot": 9}, "revision": "a" * 12},
        "/v1/nodes": nodes,
        "/v1/members": members,
        "/v1/rollout": {"state": "running", "id": 3, "revision": "a" * 12, "nodes": phases, "batch_no": 2},
        "/v1/state": {"revision": "a" * 12, "digest": "", "document": {"roles": ["web", "db", "cache"]}},
    }


def serve(ui_dir, data):
    files = {"/ui/": "index.html", "/ui/index.html": "index.html", "/ui/app.js": "app.js", "/ui/style.css": "style.css"}
    types = {"html": "text/html", "js": "text/javascript", "css": "text/css"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/v1/events":
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(b"event: hello\ndata: {}\n\n")
                self.wfile.flush()
                time.sleep(30)
                return
            if path in files:
                name = files[path]
                body = open(os.path.join(ui_dir, name), "rb").read()
                kind = types[name.rsplit(".", 1)[1]]
            elif path in data:
                body, kind = json.dumps(data[path]).encode(), "application/json"
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ui", required=True)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=3)
    a = ap.parse_args()
    for tool in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.access(tool, os.X_OK):
            print(f"skipped: {tool} is not installed")
            return 77
    data = synthetic(a.nodes)
    server = serve(a.ui, data)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    url = f"http://127.0.0.1:{server.server_address[1]}/ui/#/overview"
    want_text = sum(1 for n in data["/v1/nodes"] if "node-0009" in n["name"])
    want_failed = sum(1 for n in data["/v1/nodes"] if n["status"] == "failed")
    loads, renders, texts, chips = [], [], [], []
    try:
        for _ in range(a.trials):
            driver.get("about:blank")
            driver.get(url)
            deadline = time.monotonic() + 20
            last = None
            while time.monotonic() < deadline:
                last = driver.execute_script("return typeof S === 'undefined' ? null : S.lastRender;")
                if last and last["of"] == a.nodes:
                    break
                time.sleep(0.05)
            assert last and last["rows"] == a.nodes, f"the overview did not show {a.nodes} nodes: {last}"
            loads.append(last["at"])
            renders.append(last["ms"])
            # The filter as typed: one input event, then the layout it causes.
            t = driver.execute_script("""
                const el = document.getElementById('search'); const t0 = performance.now();
                el.value = 'node-0009'; el.dispatchEvent(new Event('input'));
                void document.body.offsetHeight; const ms = performance.now() - t0;
                return {ms: ms, rows: document.querySelectorAll('#nodes tbody tr').length};""")
            assert t["rows"] == want_text, t
            texts.append(t["ms"])
            c = driver.execute_script("""
                const el = document.getElementById('search'); el.value = ''; el.dispatchEvent(new Event('input'));
                const chip = document.querySelector('button.chip[data-chip="status"][data-value="failed"]');
                const t0 = performance.now(); chip.click(); void document.body.offsetHeight;
                return {ms: performance.now() - t0, rows: document.querySelectorAll('#nodes tbody tr').length};""")
            assert c["rows"] == want_failed, c
            chips.append(c["ms"])
    finally:
        driver.quit()
        server.shutdown()
    best = lambda xs: min(xs)
    print(f"console overview, {a.nodes} synthetic nodes, headless chromium, best of {a.trials}:")
    print(f"  navigation to every node shown: {best(loads):7.1f} ms")
    print(f"  one full render of the table:   {best(renders):7.1f} ms")
    print(f"  filter by text ({want_text} rows):     {best(texts):7.1f} ms")
    print(f"  filter by a status chip ({want_failed} rows): {best(chips):7.1f} ms")
    worst = max(max(loads), max(texts), max(chips))
    print(f"  worst of all trials: {worst:.1f} ms (target: under 1000 ms)")
    return 0 if worst < 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
