#!/usr/bin/env bash
# HTTP load on a real `jobstate serve`, side by side with what users build
# instead (../shared/bench: PostgreSQL jobs+events tables, Redis status keys
# with appendfsync always), all in one run so ratios are comparable.
#   durable heartbeats/s on 1,000 running jobs, status reads/s, /healthz/s.
# Usage: bench/http-load.sh [connections=64] [seconds=10] [--no-baselines]
#   JOBSTATE_STORE=postgresql://... serves that PostgreSQL store (the postgres
#   backend) instead of a fresh RocksDB directory; JOBSTATE_BIN picks the binary;
#   JOBSTATE_BENCH_TOKENS=1 serves with --tokens (every request sends a bearer token);
#   JOBSTATE_BENCH_TOKENS=header-only sends the header to a server without tokens;
#   JOBSTATE_BENCH_SCRAPE=1 has a scraper GET /metrics every second throughout
#   (as a Prometheus would, at a 1 s interval), and checks each scrape was a 200;
#   JOBSTATE_BENCH_LOG=access|json writes an access line per request (bench/lib/serve.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-64}; T=${2:-10}; BASELINES=${3:-}
SHARED=${JOBSTATE_SHARED:-../shared}
source bench/lib/serve.sh

# 1,000 running jobs with a long heartbeat timeout.
IDS=$D/ids.txt
python3 - "$URL" "$IDS" <<'PY'
import http.client, json, os, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); c = http.client.HTTPConnection(u.hostname, u.port)
H = {"Content-Type": "application/json"}
if os.environ.get("JOBSTATE_TOKEN"): H["Authorization"] = "Bearer " + os.environ["JOBSTATE_TOKEN"]
ids = []
for i in range(1000):
    c.request("POST", "/v1/jobs", json.dumps({"type": "bench", "heartbeat_timeout_s": 3600}), H)
    r = c.getresponse(); job = json.loads(r.read()); assert r.status == 202, job
    c.request("POST", f"/v1/jobs/{job['id']}/start", json.dumps({"worker": "bench"}), H)
    r = c.getresponse(); r.read(); assert r.status == 200
    ids.append(job["id"] + " " + r.getheader("Job-Lease"))
open(sys.argv[2], "w").write("\n".join(ids) + "\n")
PY

rate() { awk '/^Requests\/sec/{print $2}'; }
non2xx() { awk -F= '/^non2xx=/{print $2}'; }
run_wrk() {  # name, wrk args...
  local name=$1; shift
  local out; out=$(JOBSTATE_IDS=$IDS wrk -t2 -c"$C" -d"${T}s" "$@")
  local r; r=$(echo "$out" | rate); local e; e=$(echo "$out" | non2xx); e=${e:-0}
  echo "$name=$r" >&2
  [ "$e" = "0" ] || echo "WARNING: $name had $e non-2xx answers" >&2
  echo "$r"
}
SCRAPER=
if [ -n "${JOBSTATE_BENCH_SCRAPE:-}" ]; then
  AUTHH=(); [ -n "${JOBSTATE_TOKEN:-}" ] && AUTHH=(-H "Authorization: Bearer $JOBSTATE_TOKEN")
  ( for _ in $(seq $((3 * T + 30))); do  # bounded: a little longer than the three runs
      code=$(curl -s -o /dev/null -w '%{http_code}' "${AUTHH[@]}" "$URL/metrics" || true)
      [ "$code" = 200 ] || echo "WARNING: a scrape answered $code" >&2
      sleep 1
    done ) &
  SCRAPER=$!
fi
HB=$(run_wrk heartbeats_per_s -s bench/wrk/heartbeat.lua "$URL")
RD=$(run_wrk status_reads_per_s -s bench/wrk/status.lua "$URL")
HZ=$(run_wrk healthz_per_s "$URL/healthz")
[ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null
echo "jobstate heartbeats_per_s=$HB status_reads_per_s=$RD healthz_per_s=$HZ connections=$C seconds=$T"

if [ "$BASELINES" != "--no-baselines" ]; then
  PG=$("$SHARED/bench/postgres-baseline.sh" "$C" "$T" | tail -1); echo "$PG"
  RE=$("$SHARED/bench/redis-baseline.sh" "$C" | tail -1); echo "$RE"
  PGHB=$(echo "$PG" | sed -n 's/.*heartbeat_tps=\([0-9.]*\).*/\1/p')
  REHB=$(echo "$RE" | sed -n 's/.*heartbeat_ops=\([0-9.]*\).*/\1/p')
  python3 -c "
hb, rd, hz, pg, re = map(float, '$HB $RD $HZ ${PGHB:-0} ${REHB:-0}'.split())
print(f'ratios: heartbeats/postgres={hb/pg if pg else 0:.2f} (target >= 4)  status/healthz={rd/hz:.2f} (target >= 0.7)  heartbeats/redis={hb/re if re else 0:.2f}')"
fi
