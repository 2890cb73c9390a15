#!/usr/bin/env bash
# Claims/s: 64 workers claiming queued jobs at once (POST /v1/claims), against
# what users build instead: a PostgreSQL jobs table claimed with
# SELECT ... FOR UPDATE SKIP LOCKED (bench/claims-baseline.sh), in one run.
# Usage: bench/claims-load.sh [connections=64] [seconds=5] [--no-baseline]
#   JOBSTATE_STORE=postgresql://... serves that store (the postgres backend);
#   JOBSTATE_BIN picks the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-64}; T=${2:-5}; BASELINE=${3:-}
source bench/lib/serve.sh

# A type of this run only (a shared store may hold an earlier run's jobs).
export JOBSTATE_CLAIM_TYPE="bench-claims-$$-$(date +%s)"
# Enough queued jobs that the claims never run dry: created by wrk too.
JOBS=$(wrk -t2 -c"$C" -d"$((T * 2))s" -s bench/wrk/create.lua "$URL" | awk '/^Requests\/sec/{print $2}')
# One claim first: the RocksDB backend loads its in-memory queue of queued
# jobs on the first claim (once per server start), which is not a claim's cost.
curl -s -o /dev/null -X POST "$URL/v1/claims" -H 'Content-Type: application/json' \
  -d "{\"types\":[\"$JOBSTATE_CLAIM_TYPE\"],\"worker\":\"warm-up\"}"
OUT=$(wrk -t2 -c"$C" -d"${T}s" -s bench/wrk/claim.lua "$URL")
CLAIMS=$(echo "$OUT" | awk -F= '/^claims_per_s=/{print $2}')
EMPTY=$(echo "$OUT" | awk -F= '/^empty=/{print $2}')
echo "jobstate claims_per_s=$CLAIMS (creates_per_s=$JOBS, claims that found nothing: $EMPTY) connections=$C seconds=$T"
[ "${EMPTY:-0}" = "0" ] || echo "WARNING: the queue ran dry; the rate is a lower bound" >&2
if [ "$BASELINE" != "--no-baseline" ]; then
  PG=$(bench/claims-baseline.sh "$C" "$T" | tail -1); echo "$PG"
  PGC=$(echo "$PG" | sed -n 's/.*claim_tps=\([0-9.]*\).*/\1/p')
  python3 -c "print(f'ratio: claims/postgres={float(\"$CLAIMS\")/float(\"${PGC:-0}\") if float(\"${PGC:-0}\") else 0:.2f} (target >= 2)')"
fi
