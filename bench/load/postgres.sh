#!/usr/bin/env bash
# The server on PostgreSQL under load: reads, durable creates, Synthea ingest, Observation?patient&code.
#
#   bench/load/postgres.sh      (after `make build`; as root or as a user that can run PostgreSQL's initdb)
#
# Starts a throwaway PostgreSQL 15 cluster of its own (initdb into a temporary folder, a unix socket in that folder,
# no TCP, fsync and synchronous_commit on: the figures are durable), then `caduceus serve --db postgresql://...` on
# 127.0.0.1:0 and runs
#   1. wrk GET /fhir/Patient/{id},
#   2. wrk POST /fhir/Patient (create_patient.lua) and POST /fhir/Observation (create_observation.lua), each
#      answered after its commit,
#   3. `caduceus import` of the Synthea transaction Bundles into a second, empty database (SYNTHEA: a folder of
#      them, default ../shared/data/synthea-r4 when it is there, else bench/data/synthea-bundle.json), resources
#      per second (the schema made first, as a server started on the database would; after a VACUUM ANALYZE and a
#      CHECKPOINT of the creates' database),
#   4. wrk Observation?patient=X&code=Y over those patients (paths.lua-style rotation over 100 patients, each with
#      the code it has most of),
# and prints each figure. Everything it starts is stopped and every file it writes is removed on exit.
#
# Environment: DURATION (wrk -d, 10s), THREADS (wrk -t, 2), CONNECTIONS (wrk -c, 64), CADUCEUS_PG_BIN (PostgreSQL's
# programs, default /usr/lib/postgresql/15/bin).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
caduceus_bin=${CADUCEUS_BIN:-$root/build/bin/caduceus}
pg_bin=${CADUCEUS_PG_BIN:-/usr/lib/postgresql/15/bin}
duration=${DURATION:-10s}
wrk_threads=${THREADS:-2}
connections=${CONNECTIONS:-64}
if [[ -n ${SYNTHEA:-} ]]; then
  synthea=("$SYNTHEA"/*.json)
elif [[ -d $root/../shared/data/synthea-r4 ]]; then
  synthea=("$root"/../shared/data/synthea-r4/*.json)
else
  synthea=("$root/bench/data/synthea-bundle.json")
fi

for tool in wrk curl sqlite3; do
  command -v "$tool" >/dev/null || { echo "postgres.sh: $tool is not installed" >&2; exit 1; }
done
[[ -x $caduceus_bin ]] || { echo "postgres.sh: $caduceus_bin is missing: build it first (make build)" >&2; exit 1; }
[[ -x $pg_bin/initdb ]] || { echo "postgres.sh: no PostgreSQL in $pg_bin (set CADUCEUS_PG_BIN)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/caduceus-pg.XXXXXX")
chmod 755 "$tmp"
as_pg=()
if [[ $(id -u) == 0 ]]; then
  chown postgres "$tmp"
  as_pg=(runuser -u postgres --)
fi
pid=
source "$here/lib.sh"
stop_server() {
  [[ -n $pid ]] || return 0
  stop_processes "$pid"
  pid=
}
cleanup() {
  stop_server
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${as_pg[@]}" "$pg_bin/initdb" -D "$tmp/data" -U postgres --locale=C -E UTF8 >"$tmp/initdb.log" 2>&1 ||
  { cat "$tmp/initdb.log" >&2; exit 1; }
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/data" -l "$tmp/pg.log" -w \
  -o "-k $tmp -c listen_addresses='' -c port=5432 -c shared_buffers=512MB -c max_connections=200" start >/dev/null
"${as_pg[@]}" "$pg_bin/createdb" -h "$tmp" -p 5432 -U postgres caduceus
"${as_pg[@]}" "$pg_bin/createdb" -h "$tmp" -p 5432 -U postgres caduceus_import
db="postgresql://postgres@/caduceus?host=$tmp&port=5432"
# The import goes into a database of its own, empty (as a hospital's first load would): it defers the search
# indexes there and builds them once at the end; the searches of step 4 run on it.
import_db="postgresql://postgres@/caduceus_import?host=$tmp&port=5432"

start_server() {  # [database URL, default $db]
  rm -f "$tmp/out" "$tmp/err"  # (else the line of the previous server may be read before the shell truncates it)
  "$caduceus_bin" serve --listen 127.0.0.1:0 --db "${1:-$db}" --data-dir "$tmp/var" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  local line=
  for _ in $(seq 300); do
    line=$(grep -m1 'http://' "$tmp/out" 2>/dev/null || true)
    [[ -n $line ]] && break
    kill -0 "$pid" 2>/dev/null || { echo "postgres.sh: the server exited:" >&2; cat "$tmp/out" "$tmp/err" >&2; exit 1; }
    sleep 0.1
  done
  base="http://127.0.0.1:$(sed -E 's#.*http://[^:/]+:([0-9]+).*#\1#' <<<"$line")"
  for _ in $(seq 100); do
    curl -sf --max-time 1 -o /dev/null "$base/fhir/metadata" && return 0
    sleep 0.1
  done
  echo "postgres.sh: the server does not answer at $base" >&2
  exit 1
}

load() {  # name, then wrk arguments
  local name=$1; shift
  local file="$tmp/wrk-${name//[^A-Za-z0-9]/_}.txt"
  wrk -t"$wrk_threads" -c"$connections" -d"$duration" --latency "$@" >"$file"
  awk -v n="$name" '/^Requests\/sec:/ { r = $2 } $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
    /Non-2xx/ { bad = $NF } END { printf "%-28s %10s req/s  p50 %8s  p99 %8s  errors %s\n", n, r, p50, p99, bad + 0 }' \
    "$file"
}

start_server
id=$(curl -sS -X POST -H 'Content-Type: application/fhir+json' \
  --data-binary '{"resourceType":"Patient","name":[{"family":"Chalmers","given":["Peter"]}],"birthDate":"1974-12-25"}' \
  "$base/fhir/Patient" | sed -E 's/.*"id" *: *"([^"]*)".*/\1/')
echo "PostgreSQL 15 on a unix socket, fsync on; caduceus serve --db postgresql://...; wrk -t$wrk_threads -c$connections -d$duration"
load "read Patient/{id}" "$base/fhir/Patient/$id"
load "create Patient" -s "$here/create_patient.lua" "$base/fhir/Patient"
load "create Observation" -s "$here/create_observation.lua" "$base/fhir/Observation"
stop_server
# The creates' aftermath (autovacuum of the tables they filled, the checkpoint of their pages) is not the import's:
# done now, it does not run beside the import and count in its time.
"${as_pg[@]}" "$pg_bin/psql" -h "$tmp" -p 5432 -U postgres -d caduceus -qAt -c "VACUUM ANALYZE" -c "CHECKPOINT"
# The import database's schema, as a server started on it first would have made it (migrations are not ingest):
# an import of nothing applies them and leaves the database empty.
: >"$tmp/nothing.ndjson"
"$caduceus_bin" import --db "$import_db" "$tmp/nothing.ndjson" >/dev/null

start=$(date +%s%N)
"$caduceus_bin" import --db "$import_db" "${synthea[@]}" >"$tmp/import.txt" 2>"$tmp/import.err" ||
  { echo "postgres.sh: import failed:" >&2; cat "$tmp/import.txt" "$tmp/import.err" >&2; exit 1; }
ns=$(($(date +%s%N) - start))
n=$(sed -nE 's/^Imported ([0-9]+) .*/\1/p' "$tmp/import.txt")
awk -v n="$n" -v ns="$ns" -v f="${#synthea[@]}" \
  'BEGIN { printf "%-28s %10d resources in %.1f s: %.0f resources/s (%d files)\n", "import Synthea", n, ns / 1e9, n / (ns / 1e9), f }'

# 100 (patient, code) pairs: each patient with the LOINC code it has most Observations of.
pairs=$("${as_pg[@]}" "$pg_bin/psql" -h "$tmp" -p 5432 -U postgres -d caduceus_import -At -F ' ' -c "
  SELECT target_id, code FROM (
    SELECT p.target_id, p.code, row_number() OVER (PARTITION BY p.target_id ORDER BY count(*) DESC, p.code) AS k
    FROM idx_patient_token p WHERE p.type = 'Observation' AND p.param = 'code' AND p.system = 'http://loinc.org'
    GROUP BY p.target_id, p.code) t WHERE k = 1 LIMIT 100")
[[ -n $pairs ]] || { echo "postgres.sh: no Observation codes by patient in the store" >&2; exit 1; }
{
  echo 'local paths = {'
  while read -r p c; do echo "  \"/fhir/Observation?patient=$p&code=http://loinc.org|$c\","; done <<<"$pairs"
  echo '}'
  echo 'local i = 0'
  echo 'request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end'
} >"$tmp/pairs.lua"
start_server "$import_db"
first=$(sed -n 2p "$tmp/pairs.lua" | sed -E 's/^ *"([^"]*)",$/\1/')
echo "$(curl -s "$base$first&_summary=count" | sed -E 's/.*"total" *: *([0-9]+).*/\1/') results for $first (one of 100 paths)"
load "Observation?patient&code" -s "$tmp/pairs.lua" "$base"
stop_server
