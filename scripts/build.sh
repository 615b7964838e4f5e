#!/usr/bin/env bash
# Installs what is missing, configures and builds. Used by scripts/demo and
# scripts/test. BUILD_DIR (default build), BUILD_TYPE (default RelWithDebInfo),
# and extra CMake arguments in CMAKE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh "$@"
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
