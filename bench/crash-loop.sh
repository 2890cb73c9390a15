#!/usr/bin/env bash
# The crash loop (issue 14, item 7): 16 concurrent writers (create, start,
# heartbeat x3, succeed over HTTP on 127.0.0.1) through 100 SIGKILLs of
# `jobstate serve` at random moments, each followed by a restart, `jobstate
# verify` on the data dir (alongside the new server) and a check that every
# acknowledged write (2xx) is there; at the end `jobstate replay` must hold
# every acknowledged (job, version). The load and the checks are
# bench/crash_loop.py (standard library only, /usr/bin/python3).
#
#   bench/crash-loop.sh [crash_loop.py flags: --kills N --writers N --seed N --max-seconds S]
#
# Environment:
#   JOBSTATE_BIN  the binary (default: build/app/jobstate)
#   CRASH_DIR     where the data dir and serve.log go (default: a new
#                 /tmp/jobstate-crash.XXXXXX; kept on failure or with CRASH_KEEP=1).
#                 Must be a real disk (not tmpfs) for the fsyncs to mean anything.
#
# Last line: PASS or FAIL; the exit status is non-zero on any loss, any verify
# failure or an unexpected answer. About 3 minutes; bounded by --max-seconds
# (default 600). Numbers: docs/performance.md, "Crash loop".
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
BIN=${JOBSTATE_BIN:-$ROOT/build/app/jobstate}
PY=/usr/bin/python3
[ -x "$BIN" ] || { echo "bench/crash-loop.sh: no $BIN (make build)" >&2; exit 2; }
[ -x "$PY" ] || { echo "bench/crash-loop.sh: no $PY" >&2; exit 2; }
WORK=${CRASH_DIR:-$(mktemp -d /tmp/jobstate-crash.XXXXXX)}
mkdir -p "$WORK"
rc=0
"$PY" "$ROOT/bench/crash_loop.py" --bin "$BIN" --work "$WORK" "$@" || rc=$?
if [ $rc -eq 0 ] && [ "${CRASH_KEEP:-0}" = 0 ] && [ -z "${CRASH_DIR:-}" ]; then
  rm -rf "$WORK"
else
  echo "kept $WORK (data/, serve.log)"
fi
exit $rc
