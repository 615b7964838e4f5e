#!/usr/bin/env bash
# Fuzzing: installs clang and libFuzzer when missing, configures a clang
# build with -DSTARLING_FUZZ=ON, builds only the fuzzers and the libraries
# they link (not the daemon, the CLI, nor the tests that need them), replays
# every fuzzer's corpus (ctest -L fuzz: the regression inputs), runs the
# membership and store unit tests under the same sanitizers, then fuzzes each
# target for FUZZ_SECONDS. Exits non-zero when any of these fails.
#
#   BUILD_DIR        build directory (default build-fuzz); must be a clang one
#   FUZZ_SECONDS     seconds per fuzzer (default 20); 0 replays the corpus only
#   JOBS             build parallelism (default: number of cores)
#   FUZZ_WITH_TESTS  0 skips the unit tests (they add ~50 s of -j1 compile and
#                    3 s of running; the sim tests need node/ and are not built)
#   CMAKE_ARGS       extra CMake arguments
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --fuzz
BUILD_DIR=${BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}

start=$SECONDS
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DSTARLING_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-} >/dev/null
targets=(fuzz)
if [[ ${FUZZ_WITH_TESTS:-1} == 1 ]]; then targets+=(membership_unit_test store_unit_test); fi
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${targets[@]}"
echo "fuzz.sh: configured and built in $((SECONDS - start)) s with -j$JOBS"

failed=0
ctest --test-dir "$BUILD_DIR" -L fuzz --output-on-failure || failed=1
if [[ ${FUZZ_WITH_TESTS:-1} == 1 ]]; then
  for t in membership_unit_test store_unit_test; do
    "$BUILD_DIR/tests/unit/$t" --gtest_brief=1 || failed=1
  done
fi
if ((FUZZ_SECONDS > 0)); then
  BUILD_DIR="$BUILD_DIR" tests/fuzz/run.sh "$FUZZ_SECONDS" || failed=1
fi
exit "$failed"
