#!/bin/sh
# The work itself: an ordinary script that knows nothing about HTTP. It tells
# `jobstate run` how far it got with "PROGRESS <fraction> <message>" lines on
# stdout; its last stdout line, when it is JSON, becomes the job's result.
# Other output passes through unchanged. A non-zero exit fails the job, with
# the tail of stderr in the job's error.
#
# EXPORT_BATCHES (default 4) batches are "exported"; EXPORT_FAIL_AT=N makes
# batch N fail, to see a failure recorded.
set -eu

batches=${EXPORT_BATCHES:-4}
fail_at=${EXPORT_FAIL_AT:-0}

echo "exporting $batches batches for job ${JOBSTATE_JOB_ID:-?}"
i=1
while [ "$i" -le "$batches" ]; do
  if [ "$i" -eq "$fail_at" ]; then
    echo "batch $i: the warehouse database refused the connection" >&2
    exit 3
  fi
  sleep 0.1  # the real work
  percent=$((i * 100 / batches))
  if [ "$percent" -ge 100 ]; then fraction=1; else fraction=$(printf '0.%02d' "$percent"); fi
  echo "PROGRESS $fraction batch $i/$batches"
  i=$((i + 1))
done
echo "{\"batches\": $batches, \"file\": \"orders-$(date -u +%Y%m%d).csv\"}"
