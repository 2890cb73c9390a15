#!/usr/bin/env bash
# Baseline for bench/claims-load.sh: what a user builds instead of claims, a
# PostgreSQL jobs table where each worker takes the best queued job in one
# statement (SELECT ... FOR UPDATE SKIP LOCKED, the UPDATE and an event row,
# one transaction, synchronous_commit=on: durable like our claims). 500,000 queued jobs,
# pgbench with the same client count. Runs PostgreSQL as in
# ../shared/bench/postgres-baseline.sh (initdb as the postgres user, a port
# below the ephemeral range). Usage: claims-baseline.sh [clients] [seconds]
set -euo pipefail
C=${1:-64}; T=${2:-5}
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
D=$(mktemp -d /tmp/pgclaims.XXXX); chown postgres "$D"
su postgres -c "$PGBIN/initdb -D $D/data -A trust >/dev/null"
for PORT in $(seq ${PGPORT_BASE:-25452} $((${PGPORT_BASE:-25452} + 20))); do
  su postgres -c "$PGBIN/pg_ctl -D $D/data -w -o '-p $PORT -k $D -c max_connections=200 -c synchronous_commit=on -c listen_addresses=127.0.0.1' -l $D/log start >/dev/null" && break
done
trap 'su postgres -c "$PGBIN/pg_ctl -D $D/data stop -m fast >/dev/null"; rm -rf "$D"' EXIT
P="$PGBIN/psql -h 127.0.0.1 -p $PORT -U postgres -q"
$P -c "create table jobs(id uuid primary key, type text, state text, priority int, created bigserial, worker text, started_at timestamptz);
create index jobs_claimable on jobs(type, priority desc, created) where state = 'queued';
create table job_events(seq bigserial primary key, job_id uuid, type text, at timestamptz, data jsonb);
insert into jobs(id, type, state, priority) select gen_random_uuid(), 'bench', 'queued', 0 from generate_series(1, 500000);" >/dev/null
$P -c "vacuum analyze jobs" >/dev/null
cat > $D/claim.sql <<'SQL'
WITH c AS (SELECT id FROM jobs WHERE state = 'queued' AND type = 'bench' ORDER BY priority DESC, created LIMIT 1 FOR UPDATE SKIP LOCKED),
     u AS (UPDATE jobs SET state = 'running', worker = 'bench', started_at = now() FROM c WHERE jobs.id = c.id RETURNING jobs.id)
INSERT INTO job_events(job_id, type, at, data) SELECT id, 'started', now(), '{"worker":"bench"}' FROM u;
SQL
TPS=$($PGBIN/pgbench -h 127.0.0.1 -p $PORT -U postgres -n -M prepared -c $C -j 2 -T $T -f $D/claim.sql postgres 2>&1 | awk '/^tps/{print $3}')
echo "postgres claim_tps=$TPS clients=$C seconds=$T"
