#!/usr/bin/env bash
# Runs every fuzzer of a STARLING_FUZZ build for SECONDS each (default 20),
# one after the other, each from its checked-in corpus plus the generated
# seeds copied to a temp dir, so that what a run discovers never lands in the
# source tree. Exits non-zero if any fuzzer crashed (or broke a decoder's
# contract), after printing where the input that did it was saved.
#
#   tests/fuzz/run.sh [SECONDS]
#   BUILD_DIR      the fuzz build (default build-fuzz; relative to the repo)
#   FUZZERS        names to run, e.g. "packet log" (default: every fuzz_* built)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (30)
#   FUZZ_ARTIFACTS where crash inputs and logs go (default BUILD_DIR/tests/fuzz/artifacts)
set -euo pipefail

seconds=${1:-20}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-build-fuzz}
[[ $build == /* ]] || build="$root/$build"
bin_dir="$build/tests/fuzz"
artifacts=${FUZZ_ARTIFACTS:-$bin_dir/artifacts}

if [[ -z ${FUZZERS:-} ]]; then
  FUZZERS=""
  for f in "$bin_dir"/fuzz_*; do
    [[ -f $f && -x $f ]] || continue
    name=${f##*/fuzz_}
    [[ $name == seeds ]] && continue  # the seed writer, not a fuzzer
    FUZZERS+="$name "
  done
fi
if [[ -z ${FUZZERS// /} ]]; then
  echo "run.sh: no fuzzers in $bin_dir: build them first (scripts/fuzz.sh)" >&2
  exit 2
fi

mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Sanitizer reports are what a crash report is made of: stacks for UBSan too.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

failed=()
for name in $FUZZERS; do
  fuzzer="$bin_dir/fuzz_$name"
  if [[ ! -x $fuzzer ]]; then
    echo "run.sh: $fuzzer not built" >&2
    failed+=("$name (not built)")
    continue
  fi
  corpus="$work/$name"
  mkdir -p "$corpus"
  for src in "$here/corpus/$name" "$bin_dir/seeds/$name"; do
    [[ -d $src ]] && find "$src" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$corpus/" \;
  done
  log="$artifacts/$name.log"
  echo "== fuzz_$name: ${seconds}s from $(find "$corpus" -type f | wc -l) inputs (log: $log)"
  status=0
  "$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout="${FUZZ_TIMEOUT:-30}" \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$corpus" >"$log" 2>&1 || status=$?

  # The last progress line carries coverage and corpus; the final stats the speed.
  progress=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
  echo "   ${runs:-?} runs, ${rate:-?} exec/s, peak RSS ${rss:-?} MB | ${progress#*	}"
  if ((status != 0)); then
    failed+=("$name")
    echo "   FAILED (exit $status):"
    # The sanitizer's or the contract check's summary, then where the input is.
    { grep -E -A1 'contract broken' "$log" | head -n 2 || true
      grep -E '^(SUMMARY|==[0-9]+==ERROR|.*runtime error|terminate called|  what\(\))' "$log" | head -n 4 || true
      grep -E '#[0-9]+ 0x[0-9a-f]+ in ' "$log" |
        grep -v -E 'libFuzzer|fuzzer::|__sanitizer|__asan|__ubsan|libc\.so|libstdc\+\+|nptl|raise|abort|_start' |
        head -n 8 || true
    } | cut -c1-240 | sed 's/^/   /'
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [[ -n $crash ]]; then
      echo "   input: $crash"
      echo "   replay: $fuzzer $crash"
      if grep -q 'INITED' "$log"; then
        echo "   keep it as a regression: cp $crash $here/corpus/$name/"
      else
        # Died while replaying the corpus: a saved regression still fails,
        # and no fuzzing happened for this target.
        echo "   (an input of the corpus itself: fix that first, fuzzing did not start)"
      fi
    fi
  fi
done

if ((${#failed[@]})); then
  echo "run.sh: ${#failed[@]} fuzzer(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "run.sh: no crashes (${seconds}s per fuzzer)"
