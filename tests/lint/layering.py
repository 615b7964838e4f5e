#!/usr/bin/env python3
"""Checks the arrows between Starling's layers by reading #include lines and calls.

    layering.py SOURCE_DIR          check the tree; exit 1 naming each violation
    layering.py --self-test SOURCE_DIR
                                    inject one violation of each kind into a copy
                                    of the tree and check that each is caught

The build enforces most arrows (each node/ layer is its own target and include
root, libraries are linked PRIVATE), but Asio, Boost, cpp-httplib and CLI11 are
header-only and compile anywhere, and a process or thread call links in any
target: this is the check for those. The rules, with the layer table of
node/README.md:

  node/core    may include core only (plus membership, store, schema)
  node/api     may include api and core
  node/host    may include host and core
  node/daemon  may include everything above
  store/       includes membership only in memberlist_gossip.{h,cc}
  schema/, membership/, store/ never include node/ headers
  <asio/...>      only in node/host and node/daemon
  <boost/...>     only in node/host/http_server.cc (Beast serves --http)
  <httplib.h>     only in tests (their HTTP client)
  <rocksdb/...>   only in store/node_store.cc (and tests)
  <CLI/...>       only in node/daemon/flags.cc, tools/ (and tests)
  fork( execve( execv( waitpid( socket( poll( std::thread
                  only in node/host, tools/ and tests/
  std::chrono::steady_clock / system_clock, sleep_for
                  never in membership/, store/ or node/core (the injected Clock is the only time)
"""
import os
import re
import shutil
import sys
import tempfile

LAYERS = ("core", "api", "host", "daemon")
ALLOWED = {
    "core": {"core"},
    "api": {"api", "core"},
    "host": {"host", "core"},
    "daemon": {"daemon", "api", "host", "core"},
}
SOURCE_EXT = (".h", ".cc", ".hpp", ".cpp")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
PROCESS_CALLS = re.compile(r"(?<![\w:.>])(?:::)?(fork|execve|execv|execvp|waitpid|socket|poll)\s*\(|std::thread\b")
OS_TIME = re.compile(r"std::chrono::(steady_clock|system_clock|high_resolution_clock)\b|sleep_for\s*\(|\busleep\s*\(")


def strip_comments_and_strings(text):
    """Blanks comments and string/char literals, keeping line numbers."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == 'R' and text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            if not m:
                out.append(c)
                i += 1
                continue
            end = text.find(")" + m.group(1) + '"', i)
            end = n if end < 0 else end + len(m.group(1)) + 2
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def sources(root, sub):
    base = os.path.join(root, sub)
    for dirpath, _, files in os.walk(base):
        for f in sorted(files):
            if f.endswith(SOURCE_EXT):
                yield os.path.relpath(os.path.join(dirpath, f), root)


def check(root):
    problems = []
    node = os.path.join(root, "node")
    # Which layer each node/ header lives in; names are unique across layers.
    header_layer = {}
    for layer in LAYERS:
        for rel in sources(root, os.path.join("node", layer)):
            name = os.path.basename(rel)
            if name.endswith(".h"):
                if name in header_layer:
                    problems.append(f"{rel}: header name also used in node/{header_layer[name]}/ (names must be unique across layers)")
                header_layer[name] = layer
    for entry in sorted(os.listdir(node)):
        if os.path.isfile(os.path.join(node, entry)) and entry.endswith(SOURCE_EXT):
            problems.append(f"node/{entry}: a source file outside the four layers (core, api, host, daemon)")

    checked = []
    for top in ("schema", "membership", "store", "node", "tools", "tests"):
        if os.path.isdir(os.path.join(root, top)):
            checked.extend(sources(root, top))

    for rel in checked:
        parts = rel.split(os.sep)
        top = parts[0]
        layer = parts[1] if top == "node" and len(parts) > 2 and parts[1] in LAYERS else None
        in_tests = top == "tests"
        in_tools = top == "tools"
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            text = f.read()
        for lineno, line in enumerate(text.splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            kind, target = m.groups()
            where = f"{rel}:{lineno}: #include {kind}{target}{'>' if kind == '<' else kind}"
            if kind == '"' and layer:
                to = header_layer.get(os.path.basename(target)) if "/" not in target else None
                if to and to not in ALLOWED[layer]:
                    problems.append(f"{where}: node/{layer} may not include node/{to}")
            if kind == '"' and top in ("schema", "membership", "store") and "/" not in target and target in header_layer:
                if not os.path.exists(os.path.join(root, os.path.dirname(rel), target)):
                    problems.append(f"{where}: {top}/ may not include node/ headers")
            if kind == '"' and top == "store" and target.startswith("starling/membership/"):
                if os.path.basename(rel) not in ("memberlist_gossip.h", "memberlist_gossip.cc"):
                    problems.append(f"{where}: store/ reaches membership only through memberlist_gossip (starling::store_gossip)")
            if kind == '"' and top == "schema" and target.startswith(("starling/membership/", "starling/store/")):
                problems.append(f"{where}: schema/ depends on nothing of ours")
            if kind == '<' and target.startswith("asio"):
                if layer not in ("host", "daemon"):
                    problems.append(f"{where}: Asio only in node/host and node/daemon")
            if kind == '<' and target.startswith("boost/"):
                if rel != os.path.join("node", "host", "http_server.cc") and not in_tests:
                    problems.append(f"{where}: Boost only in node/host/http_server.cc")
            if kind == '<' and target == "httplib.h" and not in_tests:
                problems.append(f"{where}: cpp-httplib only in tests")
            if kind == '<' and target.startswith("rocksdb/"):
                if rel != os.path.join("store", "node_store.cc") and not in_tests:
                    problems.append(f"{where}: RocksDB only in store/node_store.cc (starling::store_rocksdb)")
            if kind == '<' and target.startswith("CLI/"):
                if rel != os.path.join("node", "daemon", "flags.cc") and not in_tools and not in_tests:
                    problems.append(f"{where}: CLI11 only in node/daemon/flags.cc and tools/")
        code = strip_comments_and_strings(text)
        for lineno, line in enumerate(code.splitlines(), 1):
            if layer != "host" and not in_tools and not in_tests:
                m = PROCESS_CALLS.search(line)
                if m:
                    problems.append(f"{rel}:{lineno}: {m.group(0).strip()} outside node/host, tools and tests")
            if top in ("membership", "store") or layer == "core":
                m = OS_TIME.search(line)
                if m:
                    problems.append(f"{rel}:{lineno}: {m.group(0).strip()}: protocol code takes time from the injected Clock")
    return problems


def self_test(root):
    """Each injected violation must be reported, and the clean tree must pass."""
    injections = [
        ("node/core/lease.cc", '#include "api_service.h"\n', "may not include node/api"),
        ("node/core/lease.cc", '#include "hook_runner.h"\n', "may not include node/host"),
        ("node/api/metrics.cc", '#include "daemon.h"\n', "may not include node/daemon"),
        ("node/core/agent.cc", "#include <asio/io_context.hpp>\n", "Asio only"),
        ("node/core/agent.cc", "#include <rocksdb/db.h>\n", "RocksDB only"),
        ("node/api/api_service.cc", "#include <httplib.h>\n", "cpp-httplib only"),
        ("node/host/api_server.cc", "#include <boost/beast/http.hpp>\n", "Boost only"),
        ("node/core/voters.cc", "#include <CLI/CLI.hpp>\n", "CLI11 only"),
        ("store/replicator.cc", '#include "starling/membership/memberlist.h"\n', "memberlist_gossip"),
        ("node/core/agent.cc", "static void Spawn() { (void)fork(); }\n", "fork("),
        ("node/daemon/daemon.cc", "static void T() { std::thread t([] {}); t.join(); }\n", "std::thread"),
        ("node/core/lease.cc", "static auto T() { return std::chrono::steady_clock::now(); }\n", "injected Clock"),
    ]
    failures = []
    if check(root):
        failures.append("the tree itself is not clean")
    for path, line, expect in injections:
        with tempfile.TemporaryDirectory() as tmp:
            for top in ("schema", "membership", "store", "node", "tools", "tests"):
                if os.path.isdir(os.path.join(root, top)):
                    shutil.copytree(os.path.join(root, top), os.path.join(tmp, top))
            target = os.path.join(tmp, path)
            with open(target, "a", encoding="utf-8") as f:
                f.write(line)
            found = [p for p in check(tmp) if p.startswith(path) and expect in p]
            print(f"{'caught' if found else 'MISSED'}: {line.strip()}  in {path}" + (f"\n    {found[0]}" if found else ""))
            if not found:
                failures.append(f"{line.strip()} in {path}")
    if failures:
        print("self-test FAILED: " + "; ".join(failures))
        return 1
    print(f"self-test passed: {len(injections)} injected violations caught")
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "--self-test":
        return self_test(argv[2])
    if len(argv) != 2:
        print(__doc__)
        return 2
    problems = check(argv[1])
    for p in problems:
        print(p)
    if problems:
        print(f"layering: {len(problems)} violation(s); the allowed arrows are in node/README.md")
        return 1
    print("layering: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
