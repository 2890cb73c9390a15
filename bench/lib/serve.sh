# Sourced by bench/*.sh (from the repository's root): checks the binary and
# wrk, then starts `jobstate serve` on a loopback port with a fresh RocksDB
# directory under /var/tmp (a real disk: fsync must cost what it costs), or
# on JOBSTATE_STORE (a postgresql:// URI) when set. Sets D (the run's
# directory), PID and URL; the server stops and D goes when the script exits.
# JOBSTATE_BIN picks the binary. JOBSTATE_BENCH_TOKENS=1 starts it with
# --tokens and an admin token, exported as JOBSTATE_TOKEN for the clients
# (bench/wrk/*.lua send it). JOBSTATE_BENCH_TOKENS=header-only has the
# clients send the same header to a server without --tokens (which ignores
# it): the cost of carrying the header, apart from checking it.
# JOBSTATE_BENCH_LOG=access serves at --log-level info, so every request
# writes its access line (to the run's log file); =json does too, in
# --log-format json. Unset: --log-level warn (no access lines).
BIN=${JOBSTATE_BIN:-build/app/jobstate}
[ -x "$BIN" ] || { echo "build first: make build" >&2; exit 1; }
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

D=$(mktemp -d /var/tmp/jobstate-bench.XXXXXX)
LOG=$D/serve.log
if [ -n "${JOBSTATE_STORE:-}" ]; then STORE=(--store "$JOBSTATE_STORE"); else STORE=(--data-dir "$D/data"); fi
AUTH=()
if [ -n "${JOBSTATE_BENCH_TOKENS:-}" ]; then
  "$BIN" token add --tokens "$D/tokens.json" --role admin --name bench >"$D/token.out"
  JOBSTATE_TOKEN=$(tail -n1 "$D/token.out"); export JOBSTATE_TOKEN
  [ "$JOBSTATE_BENCH_TOKENS" = header-only ] || AUTH=(--tokens "$D/tokens.json")
else
  unset JOBSTATE_TOKEN
fi
LOGFLAGS=(--log-level warn)
case "${JOBSTATE_BENCH_LOG:-}" in
  access) LOGFLAGS=(--log-level info) ;;
  json) LOGFLAGS=(--log-level info --log-format json) ;;
esac
"$BIN" serve "${STORE[@]}" "${AUTH[@]}" --listen 127.0.0.1:0 "${LOGFLAGS[@]}" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 100); do grep -q "serving on" "$LOG" && break; sleep 0.05; done
URL=$(sed -n 's/.*serving on \(http:[^ ]*\).*/\1/p' "$LOG")
[ -n "$URL" ] || { cat "$LOG" >&2; exit 1; }
