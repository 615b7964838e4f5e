#!/usr/bin/env bash
# Installs the Debian packages Starling builds, tests and runs with, skipping
# what is already present. Safe to run repeatedly; needs root or sudo only when
# something is missing.
set -euo pipefail

BUILD_PKGS=(
  g++ cmake ninja-build pkg-config
  libasio-dev capnproto libcapnp-dev librocksdb-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev
  libyaml-cpp-dev libsodium-dev libutfcpp-dev
  libboost-dev  # Boost.Beast serves --http
  libcpp-httplib-dev  # the tests' HTTP client
  libmsgpack-cxx-dev  # the Serf benchmark speaks Serf's msgpack RPC
  python3  # scripts/demo reads the CLI's JSON with it
  libsystemd-dev  # sd_notify: starlingd tells systemd when it is ready (Type=notify)
  help2man dpkg-dev file  # the package: man pages from --help; cpack's DEB generator runs dpkg-shlibdeps, which needs file
)
TEST_PKGS=(procps prometheus graphviz iproute2 nftables chromium chromium-driver python3-selenium haproxy lintian systemd man-db zsh adduser)  # lintian, systemd (systemd-analyze verify), man-db, zsh, adduser: tests/package (the .deb, its unit, man pages and completions); haproxy: tests/integration/events_test (the example handler's backend file); graphviz: `starling graph --format svg`; iproute2, nftables: tests/fault; chromium, chromium-driver, python3-selenium: tests/ui
BENCH_PKGS=(serf gnuplot-nox)  # docs/BENCHMARKS.md
FUZZ_PKGS=(clang libclang-rt-14-dev)  # scripts/fuzz.sh: libFuzzer and the sanitizer runtimes

want=("${BUILD_PKGS[@]}")
for arg in "$@"; do
  case "$arg" in
    --with-tests) want+=("${TEST_PKGS[@]}") ;;
    --bench) want+=("${BENCH_PKGS[@]}") ;;
    --fuzz) want+=("${FUZZ_PKGS[@]}") ;;
    *) echo "install-deps: unknown option $arg (use --with-tests, --bench and/or --fuzz)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: missing ${missing[*]} and not root (no sudo): install them and rerun" >&2
    exit 1
  fi
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
