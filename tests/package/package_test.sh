#!/usr/bin/env bash
# The Debian package, end to end, from a built tree (the binaries are not
# built again):
#   1. cpack makes the .deb; its file list must be files.txt exactly, its
#      Depends computed (dpkg-shlibdeps), lintian has nothing to say that
#      lintian-overrides does not explain;
#   2. it is installed: `dpkg -i` (mode install: root, on this machine), or
#      unpacked with `dpkg-deb -x` into a throwaway root (mode extract: any
#      user; auto picks install for root);
#   3. systemd-analyze verify accepts the installed unit, the man pages
#      render, the completions complete;
#   4. the installed starlingd runs as the unit's ExecStart says (its user,
#      LimitNOFILE, the installed config and a drop-in for this test's
#      ports and data dirs) under a NOTIFY_SOCKET listener: READY=1 for a
#      lone first node, then for a second node once it has joined it;
#   5. KillMode: a service a start hook left running survives the daemon's
#      stop as the unit's KillMode and KillSignal do it and the restart
#      after it (PID 1 here is no systemd, so the stop is done as systemd
#      does it: the unit's processes in a cgroup of their own, the signal to
#      the main process only for KillMode=process, to every process of the
#      cgroup for control-group; see README.md here);
#   6. the package is removed again; the data dirs stay.
#
#   tests/package/package_test.sh BUILD_DIR [auto|install|extract]
set -euo pipefail

BUILD=$(cd "${1:?usage: package_test.sh BUILD_DIR [auto|install|extract]}" && pwd)
MODE=${2:-auto}
HERE=$(cd "$(dirname "$0")" && pwd)
if [[ $MODE == auto ]]; then
  if (($(id -u) == 0)); then MODE=install; else MODE=extract; fi
fi
if [[ $MODE == install ]] && (($(id -u) != 0)); then
  echo "package test: mode install needs root (dpkg -i); mode extract runs as any user" >&2
  exit 1
fi

WORK=$(mktemp -d /tmp/stl-pkg-XXXXXX)
chmod 0755 "$WORK"
PIDS=()      # daemons and listeners to stop at the end
CG=""        # the cgroup standing in for the unit's
INSTALLED=0
DROPIN=""
T0=$SECONDS

step() { echo "== [$((SECONDS - T0))s] $*"; }
fail() {
  echo "package test: FAILED: $*" >&2
  for log in "$WORK"/*.log "$WORK"/*.notify; do
    [[ -f "$log" ]] && { echo "--- $log" >&2; tail -n 30 "$log" >&2; }
  done
  exit 1
}

cleanup() {
  local code=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # What the unit's cgroup still holds (the hook's service): `systemctl kill`.
  if [[ -n "$CG" && -d "$CG" ]]; then
    xargs -r kill -KILL <"$CG/cgroup.procs" 2>/dev/null || true
    for _ in $(seq 50); do [[ -s "$CG/cgroup.procs" ]] || break; sleep 0.1; done
    rmdir "$CG" 2>/dev/null || true
  fi
  [[ -f "$WORK/state/a/sleeper.pid" ]] && kill -KILL "$(cat "$WORK/state/a/sleeper.pid")" 2>/dev/null
  [[ -n "$DROPIN" ]] && rm -f "$DROPIN"
  if ((INSTALLED)); then dpkg -r starling >/dev/null 2>&1 || true; fi
  if ((code == 0)); then rm -rf "$WORK"; else echo "package test: kept $WORK" >&2; fi
  exit "$code"
}
trap cleanup EXIT

# Waits until FILE has a line matching the regex, for SECONDS at most.
wait_line() {
  local file=$1 re=$2 seconds=$3 deadline=$((SECONDS + $3))
  until [[ -f "$file" ]] && grep -qE "$re" "$file"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# --- 1. The package --------------------------------------------------------
step "cpack: the .deb from $BUILD"
cpack --config "$BUILD/CPackConfig.cmake" -B "$WORK/pkg" >"$WORK/cpack.log" 2>&1 || fail "cpack: $(tail -5 "$WORK/cpack.log")"
DEB=$(ls "$WORK"/pkg/starling_*.deb)
echo "   $(basename "$DEB"): $(stat -c %s "$DEB") bytes"

step "its file list is tests/package/files.txt"
dpkg-deb -c "$DEB" | awk '{ print $6 }' | sed 's|^\./|/|; s|/$||' | grep -v '^/$' | sort >"$WORK/files"
diff -u "$HERE/files.txt" "$WORK/files" || fail "the package's files differ from tests/package/files.txt (above)"
echo "   $(wc -l <"$WORK/files") paths"
depends=$(dpkg-deb -f "$DEB" Depends)
echo "   Depends: $depends"
for lib in libc6 libstdc++6 libsystemd0 libsodium23 adduser; do
  [[ ", $depends," == *", $lib"[\ ,]* ]] || fail "Depends lacks $lib (dpkg-shlibdeps should have computed it)"
done

step "lintian"
if command -v lintian >/dev/null; then
  # An override that a build no longer needs (the bytes that looked like a
  # misspelling moved) is no problem to report; every other tag is.
  lintian --fail-on error,warning,info --info --suppress-tags unused-override "$DEB" >"$WORK/lintian.log" 2>&1 ||
    fail "lintian: $(grep -E '^[EWI]:' "$WORK/lintian.log")"
  echo "   no tags (overridden: $(lintian --show-overrides "$DEB" 2>/dev/null | grep -c '^O:'))"
else
  fail "lintian is not installed (scripts/install-deps.sh --with-tests installs it)"
fi

# --- 2. Installed ------------------------------------------------------------
if [[ $MODE == install ]]; then
  step "dpkg -i"
  deadline=$((SECONDS + 120))
  # Another dpkg or apt may hold the lock for a while: wait for it.
  until dpkg -i "$DEB" >"$WORK/dpkg.log" 2>&1; do
    grep -q "lock" "$WORK/dpkg.log" && ((SECONDS < deadline)) || fail "dpkg -i: $(cat "$WORK/dpkg.log")"
    sleep 1
  done
  INSTALLED=1
  ROOT=""
  getent passwd starling >/dev/null || fail "postinst made no starling user"
  RUN_USER=$(id -u starling)
else
  step "dpkg-deb -x into a throwaway root (runs as the calling user: no User= switch, no adduser)"
  ROOT="$WORK/root"
  dpkg-deb -x "$DEB" "$ROOT"
  RUN_USER=$(id -u)
fi
UNIT="$ROOT/lib/systemd/system/starling.service"
[[ -f "$UNIT" ]] || fail "no $UNIT"
unit() { sed -n "s/^$1=//p" "$UNIT" | tail -n 1; }

# --- 3. Unit, man pages, completions -----------------------------------------
step "systemd-analyze verify"
if [[ $MODE == install ]]; then
  systemd-analyze verify "$UNIT" || fail "systemd-analyze verify $UNIT"
else
  # The unit as it would stand in /: its ExecStart and man pages looked up
  # in the throwaway root.
  mkdir -p "$WORK/unit"
  sed "s|/usr/bin/|$ROOT/usr/bin/|g" "$UNIT" >"$WORK/unit/starling.service"
  MANPATH="$ROOT/usr/share/man" systemd-analyze verify "$WORK/unit/starling.service" || fail "systemd-analyze verify"
fi
for want in "Type=notify" "KillMode=process" "KillSignal=SIGTERM" "Restart=on-failure" "StateDirectory=starling"; do
  grep -qx "$want" "$UNIT" || fail "the unit lacks $want"
done
unit LimitNOFILE | grep -qE '^[0-9]+$' || fail "the unit sets no LimitNOFILE"
unit User | grep -qx starling || fail "the unit runs as $(unit User), not the starling user"

step "man pages and completions"
for page in man8/starlingd.8.gz man1/starling.1.gz; do
  MANWIDTH=100 man -P cat -l "$ROOT/usr/share/man/$page" >"$WORK/man.txt" 2>/dev/null || fail "man -l $page"
  grep -q "EXIT STATUS" "$WORK/man.txt" || fail "$page has no EXIT STATUS"
done
grep -q "starling keys install" "$WORK/man.txt" || fail "starling.1 does not describe the subcommands"
"$ROOT/usr/bin/starlingd" --version | grep -q "^starlingd " || fail "starlingd --version"
"$ROOT/usr/bin/starling" --version | grep -q "^starling " || fail "starling --version"
got=$(bash -c 'source "$1/usr/share/bash-completion/completions/starling"
  COMP_WORDS=(starling keys ins); COMP_CWORD=2; _starling; echo "${COMPREPLY[*]}"' _ "$ROOT")
[[ $got == install ]] || fail "bash completion of 'starling keys ins' gave '$got'"
got=$(bash -c 'source "$1/usr/share/bash-completion/completions/starlingd"
  COMP_WORDS=(starlingd --profile ""); COMP_CWORD=2; _starlingd; echo "${COMPREPLY[*]}"' _ "$ROOT")
[[ $got == "lan wan local" ]] || fail "bash completion of 'starlingd --profile' gave '$got'"
if command -v zsh >/dev/null; then
  for f in _starling _starlingd; do zsh -n "$ROOT/usr/share/zsh/vendor-completions/$f" || fail "zsh -n $f"; done
  got=$(zsh -c 'compadd() { [[ $1 == -- ]] && shift; print -r -- "$*"; }
    words=(starling members --format ""); CURRENT=4; PREFIX=""; source "$1/usr/share/zsh/vendor-completions/_starling"' _ "$ROOT")
  [[ $got == "table json" ]] || fail "zsh completion of 'starling members --format' gave '$got'"
fi

# --- 4. The daemon as the unit starts it ---------------------------------------
read -r -a EXEC <<<"$(unit ExecStart)"
[[ -n "$ROOT" ]] && EXEC=("${EXEC[@]/#\/usr\/bin\//$ROOT/usr/bin/}") && EXEC=("${EXEC[@]/#\/etc\//$ROOT/etc/}")
CONFIG_DIR=""
for ((k = 0; k + 1 < ${#EXEC[@]}; k++)); do [[ ${EXEC[k]} == --config-dir ]] && CONFIG_DIR=${EXEC[k + 1]}; done
[[ -d "$CONFIG_DIR" ]] || fail "ExecStart's --config-dir '$CONFIG_DIR' is not an installed directory"
STARLING="$ROOT/usr/bin/starling"
KILLMODE=$(unit KillMode)
KILLSIGNAL=$(unit KillSignal)
STOP_TIMEOUT=$(unit TimeoutStopSec | tr -dc 0-9)
# LimitNOFILE as systemd sets it (soft and hard); where this shell's hard
# limit is lower and may not be raised (no CAP_SYS_RESOURCE, as in some
# containers), as high as it goes.
NOFILE=$(unit LimitNOFILE)
if ! (ulimit -n "$NOFILE") 2>/dev/null; then
  echo "   LimitNOFILE=$NOFILE cannot be set here (hard limit $(ulimit -Hn), not raisable): the daemon gets $(ulimit -Hn)"
  NOFILE=$(ulimit -Hn)
fi
RUN_AS=()
[[ $MODE == install ]] && RUN_AS=(setpriv --reuid="$(unit User)" --regid="$(unit Group)" --init-groups --)

step "StateDirectory= and the key file, as systemd and the operator make them"
mkdir -m 0755 "$WORK/state"
for n in a b; do mkdir -m 0700 "$WORK/state/$n" && chown "$RUN_USER" "$WORK/state/$n"; done
(umask 077 && "$STARLING" keygen >"$WORK/cluster.key" 2>/dev/null)
chown "$RUN_USER" "$WORK/cluster.key"
mkdir -m 0755 "$WORK/hooks"
cat >"$WORK/hooks/sleeper" <<'EOF'
#!/bin/sh
# A service that outlives the hook that started it: a session of its own and
# none of the hook's output pipes, as a real service's start hook does it.
pidfile="$STARLING_DATA_DIR/sleeper.pid"
case "$STARLING_HOOK" in
  start) setsid sleep 900 </dev/null >/dev/null 2>&1 &
         echo $! >"$pidfile" ;;
  stop) kill "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; rm -f "$pidfile" ;;
  health) kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null || { echo "sleeper is not running"; exit 1; } ;;
esac
EOF
chmod 0755 "$WORK/hooks/sleeper"
# The drop-in: what makes two nodes on one machine (ports, names, data dirs)
# and this test's key; the rest is the installed config as it is.
DROPIN="$CONFIG_DIR/90-package-test.toml"
cat >"$DROPIN" <<EOF
# Written by tests/package/package_test.sh; removed at its end.
name = "pkg-a"
cluster = "package-test"
profile = "local"
bind = "127.0.0.1:0"
http = "127.0.0.1:0"
data-dir = "$WORK/state/a"
encrypt-file = "$WORK/cluster.key"
hooks-dir = "$WORK/hooks"
tag = ["roles=svc"]
EOF
chmod 0644 "$DROPIN"
"${RUN_AS[@]}" "${EXEC[@]}" --check-config >"$WORK/check-config.out" 2>"$WORK/check-config.log" ||
  fail "starlingd --check-config on the installed config: $(cat "$WORK/check-config.log")"
grep -qx 'data-dir = "'"$WORK"'/state/a"' "$WORK/check-config.out" || fail "--check-config does not show the drop-in's data-dir"

# The cgroup systemd would give the unit: a child of the name=systemd
# hierarchy (cgroup v1, where systemd tracks units) or of the unified one.
for base in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
  if [[ -w "$base" && -f "$base/cgroup.procs" ]] && mkdir "$base/starling-package-test-$$.service" 2>/dev/null; then
    CG="$base/starling-package-test-$$.service"
    break
  fi
done
echo "   the unit's processes: ${CG:-tracked by pid (no writable cgroup hierarchy here)}"

# Starts the installed starlingd as the unit does, under its own notify
# listener (LABEL.notify) and log (LABEL.log), EXTRA args after ExecStart's;
# LAUNCHED is its pid (the unit's main process).
launch() {
  local node=$1
  shift
  python3 "$HERE/notify_listener.py" "$WORK/notify-$node" "$WORK/$node.notify" --seconds 300 &
  PIDS+=($!)
  wait_line "$WORK/$node.notify" '^listening$' 10 || fail "the notify listener did not start"
  (
    [[ -n "$CG" ]] && echo "$BASHPID" >"$CG/cgroup.procs"
    ulimit -n "$NOFILE"
    exec env NOTIFY_SOCKET="$WORK/notify-$node" "${RUN_AS[@]}" "${EXEC[@]}" "$@"
  ) >>"$WORK/$node.log" 2>&1 </dev/null &
  PIDS+=($!)
  LAUNCHED=$!
}

# Running, not a zombie nobody reaped yet (PID 1 here may not reap).
alive() { [[ -r /proc/$1/stat ]] && [[ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]]; }
info() { "$STARLING" --socket "$WORK/state/$1/starlingd.sock" --timeout 5 info --format json; }
field() { info "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }

step "node a alone: READY=1"
launch a
A=$LAUNCHED
wait_line "$WORK/a.notify" '^READY=1' 20 || fail "node a sent no READY=1"
grep -m1 '^READY=1' "$WORK/a.notify" | sed 's/^/   /'
A_ADDR=$(field a addr) || fail "node a does not answer starling info after READY=1 (as root, to the starling user's socket)"
[[ "$(field a name)" == pkg-a ]] || fail "node a runs as $(field a name), not as the drop-in's name"
grep -qE "^Max open files +$NOFILE +$NOFILE " "/proc/$A/limits" ||
  fail "the daemon does not run with $NOFILE open files: $(grep 'open files' "/proc/$A/limits")"
if [[ $MODE == install ]]; then
  [[ "$(stat -c %U "/proc/$A")" == starling ]] || fail "node a runs as $(stat -c %U "/proc/$A"), not starling"
fi

step "node b joins a: READY=1 once joined"
launch b --name pkg-b --data-dir "$WORK/state/b" --tag roles=other --join "$A_ADDR"
wait_line "$WORK/b.notify" '^READY=1' 30 || fail "node b sent no READY=1"
grep -q '^STATUS=joining through 1 seed' "$WORK/b.notify" || fail "node b did not say it was joining first"
"$STARLING" --socket "$WORK/state/b/starlingd.sock" members --status alive | grep -q '^pkg-a ' ||
  fail "node b was READY without a alive in its member list"
grep -m1 '^READY=1' "$WORK/b.notify" | sed 's/^/   /'

# --- 5. KillMode ---------------------------------------------------------------
step "a hook starts a service on a (a rollout)"
cat >"$WORK/desired.yaml" <<'EOF'
roles: [svc]
nodes:
  pkg-a: {lifecycle: commissioned, roles: [svc]}
services:
  sleeper: {roles: [svc], hooks: {start: sleeper, stop: sleeper, health: sleeper}}
policy: {batch: "100%", node_deadline: 60s}
EOF
"$STARLING" --socket "$WORK/state/a/starlingd.sock" apply -f "$WORK/desired.yaml" >/dev/null || fail "apply"
"$STARLING" --socket "$WORK/state/a/starlingd.sock" rollout start >/dev/null 2>>"$WORK/rollout.log" || fail "rollout start"
"$STARLING" --socket "$WORK/state/a/starlingd.sock" --timeout 120 rollout status --watch >"$WORK/rollout.log" 2>&1 ||
  fail "the rollout did not succeed: $(tail -5 "$WORK/rollout.log")"
SVC=$(cat "$WORK/state/a/sleeper.pid") || fail "the start hook wrote no pid"
alive "$SVC" || fail "the hook's service $SVC is not running"
[[ -z "$CG" ]] || grep -qx "$SVC" "$CG/cgroup.procs" || fail "the service $SVC is not in the unit's cgroup"
echo "   service pid $SVC"

step "stop a as systemd does for KillMode=$KILLMODE, KillSignal=$KILLSIGNAL"
case "$KILLMODE" in
  process) targets="$A" ;;
  control-group | mixed) targets=$(if [[ -n "$CG" ]]; then cat "$CG/cgroup.procs"; else echo "$A $SVC"; fi) ;;
  none) targets="" ;;
  *) fail "unknown KillMode $KILLMODE" ;;
esac
[[ $KILLMODE == mixed ]] && targets="$A"  # SIGKILL for the rest comes only after the main process is gone
# shellcheck disable=SC2086
[[ -n "$targets" ]] && kill -s "${KILLSIGNAL#SIG}" $targets
for _ in $(seq $((${STOP_TIMEOUT:-90} * 10))); do kill -0 "$A" 2>/dev/null || break; sleep 0.1; done
kill -0 "$A" 2>/dev/null && { kill -KILL "$A"; fail "a did not stop within TimeoutStopSec"; }
wait "$A" && a_exit=0 || a_exit=$?
((a_exit == 0)) || fail "a exited $a_exit, not 0 (a graceful leave)"
if [[ $KILLMODE == mixed && -n "$CG" ]]; then xargs -r kill -KILL <"$CG/cgroup.procs" 2>/dev/null || true; fi
grep -q '^STOPPING=1' "$WORK/a.notify" || fail "a did not send STOPPING=1 on its leave"
alive "$SVC" || fail "the hook's service $SVC died with the daemon (KillMode=$KILLMODE)"
[[ -z "$CG" ]] || grep -qx "$SVC" "$CG/cgroup.procs" || fail "the service left the unit's cgroup"
where=""
[[ -n "$CG" ]] && where=" in the unit's cgroup"
echo "   a left gracefully (exit 0); service $SVC still runs$where"

step "restart a (Restart=): it rejoins, and the service is the same process"
launch a-restarted
A=$LAUNCHED
wait_line "$WORK/a-restarted.notify" '^READY=1' 30 || fail "the restarted a sent no READY=1"
deadline=$((SECONDS + 30))
until "$STARLING" --socket "$WORK/state/b/starlingd.sock" members --status alive | grep -q '^pkg-a '; do
  ((SECONDS < deadline)) || fail "b does not see the restarted a alive"
  sleep 0.2
done
deadline=$((SECONDS + 30))
until "$STARLING" --socket "$WORK/state/a/starlingd.sock" nodes --format json |
  python3 -c 'import json,sys; sys.exit(0 if any(n["name"] == "pkg-a" and n.get("healthy") for n in json.load(sys.stdin)) else 1)'; do
  ((SECONDS < deadline)) || fail "the restarted a does not report its service healthy"
  sleep 0.2
done
[[ "$(cat "$WORK/state/a/sleeper.pid")" == "$SVC" ]] || fail "the service was started again ($(cat "$WORK/state/a/sleeper.pid"), was $SVC)"
alive "$SVC" || fail "the service $SVC is gone after the restart"
echo "   a back (READY=1, alive on b), healthy, service still pid $SVC"

# --- 6. Removed ------------------------------------------------------------------
step "stop both, remove the package"
for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
PIDS=()
rm -f "$DROPIN"
DROPIN=""
if [[ $MODE == install ]]; then
  dpkg -r starling >"$WORK/dpkg-r.log" 2>&1 || fail "dpkg -r: $(cat "$WORK/dpkg-r.log")"
  INSTALLED=0
  [[ ! -e /usr/bin/starlingd && ! -e /lib/systemd/system/starling.service ]] || fail "dpkg -r left the binaries or the unit"
  [[ -f /etc/starling/starlingd.toml ]] || fail "dpkg -r took the conffile (only a purge should)"
else
  rm -rf "$ROOT"
fi
for n in a b; do
  [[ -f "$WORK/state/$n/keyring" ]] || fail "the data dir $WORK/state/$n is gone or emptied"
done
echo "   removed; the data dirs remain ($(du -sh "$WORK/state" | cut -f1))"
step "passed ($MODE)"
