#!/usr/bin/python3
"""The web console in a real browser (headless Debian chromium, through
chromedriver and python3-selenium) against a live 4-node cluster on 127.0.0.1.

    console_test.py --build BUILD_DIR --hooks HOOKS_DIR --out SCREENSHOT_DIR

What it shows, each step checked against the CLI as well as the page:
  * the overview lists the four nodes with their lifecycle, status and health;
  * approving an update for two selected nodes rolls it out to exactly those
    two, and the page shows their phase and revision change without a reload;
  * a rollback from the desired state's history;
  * a decommission with the '-' button;
  * a write without the token (or from another origin) is refused with 403
    and changes nothing;
  * a screenshot of every page, light and dark, in SCREENSHOT_DIR.
Exit 77 (skipped) when chromium, chromedriver or selenium is missing.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:
    print("skipped: python3-selenium is not installed (scripts/install-deps.sh --with-tests)")
    sys.exit(77)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PAGES = ["overview", "node/n1", "state", "rollout", "graph", "members", "artifacts"]


def doc(version):
    return f"""roles: [web]
packages:
  web:
    version: "{version}"
    roles: [web]
    hooks: {{install: web-install, verify: web-verify, remove: web-remove}}
services:
  db:
    package: web
    roles: [web]
    hooks: {{start: db-start, stop: db-stop, health: db-health}}
    outputs: [url]
  api:
    package: web
    roles: [web]
    hooks: {{start: api-start, stop: api-stop, health: api-health}}
    params: {{DB_URL: "postgres://${{db.url}}/app"}}
    outputs: [url]
    after: [db]
policy: {{batch: 2, min_healthy: 1s, node_deadline: 20s, failure_threshold: 0, auto_revert: true}}
switches: {{auto_commission: true}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, fn, timeout=30.0, every=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # the page or the daemon is still on its way
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Cluster:
    def __init__(self, build, hooks, root):
        self.starlingd = os.path.join(build, "node", "starlingd")
        self.starling = os.path.join(build, "tools", "cli", "starling")
        self.hooks, self.root = hooks, root
        self.procs, self.gossip, self.http = [], [], []

    def start(self, n=4):
        for i in range(1, n + 1):
            g, h = free_port(), free_port()
            self.gossip.append(g)
            self.http.append(h)
            d = os.path.join(self.root, f"n{i}")
            args = [self.starlingd, "--name", f"n{i}", "--bind", f"127.0.0.1:{g}", "--data-dir", d,
                    "--http", f"127.0.0.1:{h}", "--profile", "local", "--cluster", "ui-test",
                    "--hooks-dir", self.hooks, "--tag", "roles=web", "--ui-write"]
            if i > 1:
                args += ["--join", f"127.0.0.1:{self.gossip[0]}"]
            log = open(os.path.join(self.root, f"n{i}.log"), "w")
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL))
            if i == 1:
                wait_for("n1's socket", lambda: os.path.exists(self.socket(1)))

    def socket(self, i):
        return os.path.join(self.root, f"n{i}", "starlingd.sock")

    def cli(self, i, *args, check=True):
        r = subprocess.run([self.starling, "--socket", self.socket(i), *args], capture_output=True, text=True,
                           timeout=30)
        if check and r.returncode != 0:
            raise AssertionError(f"starling {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def json(self, i, *args):
        return json.loads(self.cli(i, *args, "--format", "json").stdout)

    def apply(self, text):
        path = os.path.join(self.root, f"doc-{abs(hash(text))}.yaml")
        with open(path, "w") as f:
            f.write(text)
        return self.json(1, "apply", "-f", path)["revision"]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs:
            p.wait()


def http(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,900",
              "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def row_cell(driver, name, cell):
    # Read in one step: the live table may be drawn anew between a lookup and a read.
    return driver.execute_script("const e = document.querySelector(arguments[0]);"
                                 " return e ? e.textContent.trim() : null;", f'#nodes tr[data-node="{name}"] td.{cell}')


def click(driver, css):
    """Clicks what `css` finds now: the live page may have drawn it anew
    since it was last looked up, so finding and clicking are one step."""
    if not driver.execute_script("const e = document.querySelector(arguments[0]); if (!e || e.disabled) return false;"
                                 " e.click(); return true;", css):
        raise AssertionError(f"nothing to click at {css}")


def confirm(driver):
    wait_for("the confirm button", lambda: driver.find_element(By.ID, "dialog-confirm").is_displayed())
    driver.find_element(By.ID, "dialog-confirm").click()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--hooks", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not os.access(tool, os.X_OK):
            print(f"skipped: {tool} is not installed (scripts/install-deps.sh --with-tests)")
            return 77
    os.makedirs(a.out, exist_ok=True)
    root = tempfile.mkdtemp(prefix="starling-ui-")
    c = Cluster(os.path.abspath(a.build), os.path.abspath(a.hooks), root)
    driver = None
    started = time.monotonic()
    try:
        c.start()
        wait_for("four alive members", lambda: sum(m["status"] == "alive" for m in c.json(1, "members")) == 4)
        v1 = c.apply(doc("1.0"))
        c.cli(1, "rollout", "start")
        wait_for("the first rollout", lambda: c.json(1, "rollout", "status")["state"] == "succeeded", 60)
        base = f"http://127.0.0.1:{c.http[0]}"
        login = c.json(1, "ui", "url")["login_url"]
        assert login.startswith(base + "/ui/#token="), login

        # A write without the token, with a wrong one, or from another
        # site's page: 403, and the desired state does not move.
        before = c.json(1, "info")["revision"]
        for headers in ({"Content-Type": "application/json"},
                        {"Content-Type": "application/json", "X-Starling-Token": "0" * 64},
                        {"Content-Type": "application/json", "X-Starling-Token": login.split("token=")[1],
                         "Origin": "http://evil.example"}):
            status, body = http(base + "/v1/freeze", "POST", {"reason": "not allowed"}, headers)
            assert status == 403, (headers, status, body)
        assert c.json(1, "info")["revision"] == before, "a refused write changed the desired state"
        status, _ = http(base + "/v1/state", "POST", {}, {"Content-Type": "application/json"})
        assert status == 405, status

        driver = browser()
        driver.get(login)
        wait_for("the token to leave the address bar", lambda: "token=" not in driver.current_url)
        wait_for("four rows", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")) == 4)
        wait_for("the live badge", lambda: driver.find_element(By.ID, "live").text == "live")
        for i in range(1, 5):
            n = f"n{i}"
            wait_for(f"{n} commissioned, alive, healthy", lambda: (row_cell(driver, n, "c-lifecycle"),
                     row_cell(driver, n, "c-status"), row_cell(driver, n, "c-health")) ==
                     ("commissioned", "alive", "healthy"))
        assert driver.find_element(By.ID, "access").text == "actions on"

        # Approve an update for two nodes: exactly those move, live.
        v2 = c.apply(doc("2.0"))
        driver.execute_script("window.__notReloaded = true;")
        wait_for("the page to show the new desired revision", lambda: driver.execute_script(
            "return S.data.state && S.data.state.revision;") == v2)
        for n in ("n3", "n4"):
            click(driver, f'input.sel[data-node="{n}"]')
        wait_for("the approve button", lambda: driver.find_element(By.ID, "approve-selected").is_enabled())
        driver.find_element(By.ID, "approve-selected").click()
        confirm(driver)
        wait_for("n3 and n4 on the new revision, shown live", lambda: all(
            row_cell(driver, n, "c-applied") == v2[:12] and row_cell(driver, n, "c-phase") == "done"
            for n in ("n3", "n4")), 60)
        assert driver.execute_script("return window.__notReloaded === true;"), "the page was reloaded"
        status = c.json(1, "rollout", "status")
        wait_for("the rollout to settle", lambda: c.json(1, "rollout", "status")["state"] == "succeeded", 30)
        status = c.json(1, "rollout", "status")
        assert sorted(status["only"]) == ["n3", "n4"], status["only"]
        applied = {n["name"]: n["applied_revision"] for n in status["nodes"]}
        assert applied == {"n1": v1, "n2": v1, "n3": v2, "n4": v2}, applied
        for n in ("n1", "n2"):
            assert row_cell(driver, n, "c-applied") == v1[:12] and row_cell(driver, n, "c-phase") == "excluded"
        wait_for("n3 and n4 out of their batch on the page", lambda: all(
            row_cell(driver, n, "c-lifecycle") == "commissioned" for n in ("n3", "n4")))
        driver.save_screenshot(os.path.join(a.out, "approved-for-two-overview.png"))

        # The rollout page shows the batch and each node's phase.
        driver.get(base + "/ui/#/rollout")
        wait_for("the rollout page", lambda: driver.find_element(By.ID, "rollout-state").text == "succeeded")
        phases = driver.execute_script(
            "const out = {}; document.querySelectorAll('#rollout-nodes tbody tr').forEach(r => {"
            " out[r.dataset.node] = r.querySelector('td.c-phase').textContent.trim(); }); return out;")
        assert phases == {"n1": "excluded", "n2": "excluded", "n3": "done", "n4": "done"}, phases
        driver.save_screenshot(os.path.join(a.out, "approved-for-two-rollout.png"))

        # A rollback from the history page, to v1.
        driver.get(base + "/ui/#/state")
        wait_for("v1 in the history", lambda: driver.find_element(
            By.CSS_SELECTOR, f'button.act-rollback[data-rev="{v1}"]').is_enabled())
        click(driver, f'button.act-rollback[data-rev="{v1}"]')
        confirm(driver)
        rolled = wait_for("a new current revision", lambda: (lambda r: r if r not in (v1, v2) else None)(
            c.json(1, "info")["revision"]))
        d = c.json(1, "diff", v1, rolled)
        # What the operator wrote is back; what the cluster keeps itself (voters) stays.
        assert not [x for x in d if x["path"].split(".")[0] in ("packages", "services", "policy")], \
            f"the rollback does not say what v1 said: {d}"
        wait_for("the page to show the new revision", lambda: rolled[:12] in driver.find_element(By.TAG_NAME, "h2").text)

        # Decommission n2 with '-'.
        driver.get(base + "/ui/#/overview")
        wait_for("n2's '-' button", lambda: driver.find_element(
            By.CSS_SELECTOR, 'button.act-decommission[data-node="n2"]').is_enabled())
        click(driver, 'button.act-decommission[data-node="n2"]')
        confirm(driver)
        wait_for("n2 decommissioned on the page", lambda: row_cell(driver, "n2", "c-lifecycle") == "decommissioned")
        nodes = {n["name"]: n["lifecycle"] for n in c.json(1, "nodes")}
        assert nodes["n2"] == "decommissioned" and nodes["n1"] == "commissioned", nodes

        # The page without its token: the action is refused and says why.
        driver.execute_script("sessionStorage.clear();")
        driver.get(base + "/ui/#/overview")
        driver.refresh()
        wait_for("no token badge", lambda: driver.find_element(By.ID, "access").text == "no token")
        driver.execute_script("""fetch('/v1/freeze', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({reason: 'x'})}).then(r => { window.__refused = r.status; });""")
        wait_for("the page's refused write", lambda: driver.execute_script("return window.__refused;") == 403)
        # The page talks to node 1, so a freeze that got through would be in node 1's document by now. The
        # revision itself is no witness: the cluster may write one of its own (voters) after the decommission.
        state = c.json(1, "get")
        assert not state.get("freeze"), f"a refused freeze is in the document: {state.get('freeze')}"

        # Every page, light and dark; the login again for the action buttons.
        driver.get(login)
        driver.refresh()
        for theme in ("light", "dark"):
            for page in PAGES:
                driver.execute_script(f"localStorage.setItem('starling-theme', '{theme}');")
                driver.get(base + "/ui/#/" + page)
                driver.refresh()
                wait_for(f"{page} to render", lambda: driver.execute_script(
                    "return document.querySelector('#main h2') !== null && !document.querySelector('#main').textContent.includes('Loading');"))
                time.sleep(0.3)  # lets the last fetch's render paint before the shot
                shot = os.path.join(a.out, f"{page.replace('/', '-')}-{theme}.png")
                driver.save_screenshot(shot)
        print(f"console test passed in {time.monotonic() - started:.1f} s; screenshots in {a.out}")
        return 0
    except Exception:
        # What the page and the cluster showed when it went wrong.
        if driver:
            driver.save_screenshot(os.path.join(a.out, "failure.png"))
            print("page message:", driver.execute_script("return document.getElementById('message').textContent;"))
            print("browser log:", driver.get_log("browser") if hasattr(driver, "get_log") else "")
        print("rollout:", c.cli(1, "rollout", "status", check=False).stdout)
        print("nodes:", c.cli(1, "nodes", check=False).stdout)
        raise
    finally:
        if driver:
            driver.quit()
        c.stop()
        if os.environ.get("KEEP_UI_TEST_DIR"):
            print("kept", root)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
