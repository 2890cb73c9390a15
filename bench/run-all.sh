#!/usr/bin/env bash
# Runs every benchmark, one step after another, then the crash loop. `make
# bench` calls it after building. Numbers and how to read them:
# docs/performance.md.
#
# Environment:
#   BUILD_DIR           where the binaries are (default: build)
#   JOBSTATE_BENCH_DIR  scratch stores; must be a real disk, not tmpfs
#                       (default: $BUILD_DIR/bench-data)
#   RESULTS_DIR         JSON results, one file per step (default: $BUILD_DIR/bench-results)
#   APPEND_BENCH_ARGS   extra flags for append_bench, e.g. --benchmark_filter=InFlight
#
# To add a step: append a `step "..."` line and its command at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR="${BUILD_DIR:-build}"
export JOBSTATE_BENCH_DIR="${JOBSTATE_BENCH_DIR:-$PWD/$BUILD_DIR/bench-data}"
RESULTS_DIR="${RESULTS_DIR:-$BUILD_DIR/bench-results}"
mkdir -p "$JOBSTATE_BENCH_DIR" "$RESULTS_DIR"

step() { printf '\n== %s\n' "$*"; }

step "durable append throughput: writer vs raw RocksDB (median of 3)"
if [[ ! -x "$BUILD_DIR/bench/append_bench" ]]; then
  echo "$BUILD_DIR/bench/append_bench is missing: is libbenchmark-dev installed (scripts/install-deps)?" >&2
  exit 1
fi
# shellcheck disable=SC2086  # APPEND_BENCH_ARGS is a list of flags
"$BUILD_DIR/bench/append_bench" \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_min_time=2 \
  --benchmark_out="$RESULTS_DIR/append_bench.json" --benchmark_out_format=json \
  ${APPEND_BENCH_ARGS:-}

step "crash loop: 100 SIGKILLs of serve under 16 writers, nothing acknowledged lost (about 5 min)"
rm -rf "$JOBSTATE_BENCH_DIR/crash-loop"
CRASH_DIR="$JOBSTATE_BENCH_DIR/crash-loop" JOBSTATE_BIN="$BUILD_DIR/app/jobstate" \
  bench/crash-loop.sh | tee "$RESULTS_DIR/crash-loop.txt"
