#!/bin/sh
# A cron entry wrapped in `jobstate run`, e.g.
#   15 2 * * *  JOBSTATE_SERVER=http://jobs.internal:8080 /opt/app/nightly-export.sh
#
# The export becomes a job of type "nightly-export": anyone can see it
# running and how far it got (GET /v1/jobs?type=nightly-export), its result
# or its error afterwards, and if this machine dies mid-way the job is failed
# by the watchdog after 60 s without a heartbeat instead of staying "running".
# The exit status is the export's own, so cron and shell logic still work.
#
# JOBSTATE: the jobstate binary (default: jobstate on PATH).
# JOBSTATE_SERVER: the server (default http://127.0.0.1:8080).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
exec "${JOBSTATE:-jobstate}" run \
  --server "${JOBSTATE_SERVER:-http://127.0.0.1:8080}" \
  --type nightly-export \
  --heartbeat-timeout 60 \
  -- "$here/export-orders.sh"
