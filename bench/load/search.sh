#!/usr/bin/env bash
# Search under load on loopback, over a generated store (bench/gen_store.cpp, build/bin/caduceus_gen).
#
#   bench/load/search.sh                  (after `make build`; or `make bench-search`)
#   DB=/tmp/s100k.db bench/load/search.sh (a store made earlier by caduceus_gen, its manifest beside it)
#
# Without DB it uses build/bench/search-$RESOURCES.db; the database is generated first when missing (4.6 GiB and some
# 20 minutes for the million on 2 shared cores; it is kept for the next run: delete it when done). Starts
# `caduceus serve --search-index true` on 127.0.0.1:0 over that database, then for each query below prints the
# number of results of one request (so that a reader sees what is measured) and runs
# `wrk --latency -s bench/load/paths.lua`, which rotates through one path per patient (or organization) listed
# in the generator's manifest, so that consecutive requests ask different questions. Prints req/s, p50, p99 and
# the non-2xx answers of each query (and, with RUNS > 1, the medians). The server is stopped and the files this
# script writes are removed on exit, whatever the outcome; the database is only read.
#
# Environment: DB, RESOURCES (default 1000000), DURATION (wrk -d, 10s), WARMUP (wrk -d before each measured run,
# 2s; 0 for none), THREADS (wrk -t, 2), CONNECTIONS (wrk -c, 64), IO_THREADS (server I/O threads, default: the
# number of cores), RUNS (1), QUERIES (names of the queries to run, default all: obs-code obs-include patient-name
# patient-birthdate chain has count), CADUCEUS_BIN, GEN_BIN. The server also reads its own CADUCEUS_* variables.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
caduceus_bin=${CADUCEUS_BIN:-$root/build/bin/caduceus}
gen_bin=${GEN_BIN:-$root/build/bin/caduceus_gen}
resources=${RESOURCES:-1000000}
db=${DB:-$root/build/bench/search-$resources.db}
duration=${DURATION:-10s}
warmup=${WARMUP:-2s}
wrk_threads=${THREADS:-2}
connections=${CONNECTIONS:-64}
io_threads=${IO_THREADS:-$(nproc)}
runs=${RUNS:-1}
queries=${QUERIES:-obs-code obs-include patient-name patient-birthdate chain has count}

for tool in wrk curl jq; do
  command -v "$tool" >/dev/null || { echo "search.sh: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
[[ -x $caduceus_bin ]] || { echo "search.sh: $caduceus_bin is missing: build it first (make build)" >&2; exit 1; }

if [[ ! -f $db ]]; then
  [[ -x $gen_bin ]] || { echo "search.sh: $gen_bin is missing: build it first (make build)" >&2; exit 1; }
  mkdir -p "$(dirname "$db")"
  echo "search.sh: generating $db ($resources resources; kept for later runs)" >&2
  "$gen_bin" --db "sqlite:$db" --resources "$resources" || { rm -f "$db" "$db.manifest"; exit 1; }
fi
manifest=$db.manifest
[[ -f $manifest ]] || { echo "search.sh: $manifest (written by caduceus_gen) is missing" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/caduceus-search.XXXXXX")
pids=()
source "$here/lib.sh"
cleanup() {
  stop_processes "${pids[@]}"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the server ----------------------------------------------------------------------------------------------------
"$caduceus_bin" serve --listen 127.0.0.1:0 --db "sqlite:$db" --search-index true --threads "$io_threads" \
  >"$tmp/caduceus.out" 2>"$tmp/caduceus.out.err" &
pids+=($!)
port=
for _ in $(seq 600); do
  line=$(grep -m1 'http://' "$tmp/caduceus.out" 2>/dev/null || true)
  if [[ -n $line ]]; then
    port=$(sed -E 's#.*http://(\[[^]]*\]|[^:/]+):([0-9]+).*#\2#' <<<"$line")
    break
  fi
  kill -0 "${pids[0]}" 2>/dev/null || { echo "search.sh: the server exited:" >&2; cat "$tmp"/caduceus.out* >&2; exit 1; }
  sleep 0.1
done
[[ -n $port ]] || { echo "search.sh: no URL printed within 60 s by the server" >&2; exit 1; }
base="http://127.0.0.1:$port"
echo "caduceus on $base/fhir over $db ($(du -h "$db" | cut -f1)), I/O threads: $io_threads" >&2

# --- the queries: one path per line in $tmp/<name>.paths ---------------------------------------------------------
manifest_values() { sed -n "s/^$1 //p" "$manifest"; }
urlencode() { jq -rn --arg v "$1" '$v | @uri'; }
loinc='http://loinc.org%7C'
make_paths() {
  local name=$1 v
  case $name in
    obs-code)
      manifest_values patient | while read -r v; do echo "/fhir/Observation?patient=$v&code=${loinc}8310-5"; done ;;
    obs-include)
      manifest_values patient | while read -r v; do
        echo "/fhir/Observation?patient=$v&code=${loinc}8310-5&_include=Observation:subject"
      done ;;
    patient-name) echo "/fhir/Patient?name=smi" ;;
    patient-birthdate) echo "/fhir/Patient?birthdate=le1950&_count=100" ;;
    chain)
      manifest_values organization-name | while read -r v; do
        echo "/fhir/Observation?patient.organization.name=$(urlencode "$v")"
      done ;;
    has) echo "/fhir/Patient?_has:Observation:patient:code=${loinc}4548-4" ;;
    count) echo "/fhir/Observation?code=${loinc}8310-5&_summary=count" ;;
    *) echo "search.sh: unknown query '$name'" >&2; return 1 ;;
  esac
}

# Results of one request: matches on the page (+ included), and Bundle.total when the server gives it.
results_of() {
  local path=$1 status
  status=$(curl -sS --max-time 60 -o "$tmp/one.json" -w '%{http_code}' -H 'Accept: application/fhir+json' "$base$path")
  if [[ $status != 200 ]]; then
    echo "HTTP $status: $(head -c 300 "$tmp/one.json")"
    return
  fi
  jq -r '([.entry[]? | select(.search.mode == "match")] | length) as $m
         | ([.entry[]? | select(.search.mode == "include")] | length) as $i
         | "\($m) matches" + (if $i > 0 then " + \($i) included" else "" end)
           + (if .total != null then ", total \(.total)" else "" end)
           + (if ([.link[]? | select(.relation == "next")] | length) > 0 then ", next page" else "" end)' \
    "$tmp/one.json"
}

# wrk's latency figure (e.g. 850.00us, 1.52ms, 1.01s) in ms.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.2f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
    else printf "%s", v }'
}

# req/s, p50 (ms), p99 (ms), non-2xx, socket errors of one wrk report.
summarize() {
  local rps p50 p99 bad sock
  read -r rps p50 p99 bad sock < <(awk '
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = $2 }
    $1 == "99%" { p99 = $2 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    /^[ \t]*Socket errors:/ { sub(/^[ \t]*Socket errors: /, ""); gsub(/ /, ""); sock = $0 }
    END { printf "%s %s %s %s %s\n", rps, p50, p99, (bad == "" ? 0 : bad), (sock == "" ? "-" : sock) }
  ' "$1")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $bad $sock"
}

run_wrk() {
  local out=$1 length=$2 paths=$3 seconds=${2%s}
  [[ $seconds =~ ^[0-9]+$ ]] || seconds=60
  timeout --kill-after=5 $((seconds + 60)) \
    wrk -t"$wrk_threads" -c"$connections" -d"$length" --timeout 10s --latency -s "$here/paths.lua" "$base" \
    -- "$paths" >"$out"
}

# Waits (at most 120 s) until the server has used less than 5 % of a core over half a second: requests that wrk
# left behind (a slow query's queue outlives wrk's connections) must not weigh on the next query's figures.
wait_idle() {
  local pid=${pids[0]} before after ticks
  ticks=$(getconf CLK_TCK)
  for _ in $(seq 240); do
    before=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    sleep 0.5
    after=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    (((after - before) * 100 < ticks * 5 / 2)) && return 0
  done
  echo "search.sh: the server is still busy after 120 s" >&2
}

declare -A described
for name in $queries; do
  make_paths "$name" >"$tmp/$name.paths"
  [[ -s $tmp/$name.paths ]] || { echo "search.sh: no paths for $name (manifest $manifest)" >&2; exit 1; }
  described[$name]="$(head -n1 "$tmp/$name.paths") ($(wc -l <"$tmp/$name.paths") paths): $(results_of "$(head -n1 "$tmp/$name.paths")")"
  echo "$name: ${described[$name]}" >&2
done

for run in $(seq "$runs"); do
  for name in $queries; do
    wait_idle
    if [[ $warmup != 0 && $warmup != 0s ]]; then run_wrk "$tmp/$name.warmup.txt" "$warmup" "$tmp/$name.paths"; fi
    echo "== run $run, $name: wrk -t$wrk_threads -c$connections -d$duration --latency -s paths.lua ($(wc -l <"$tmp/$name.paths") paths)" >&2
    wait_idle
    run_wrk "$tmp/$name.$run.txt" "$duration" "$tmp/$name.paths"
    sed -n '/Latency Distribution/,/Requests\/sec/p' "$tmp/$name.$run.txt" >&2
    summarize "$tmp/$name.$run.txt" >"$tmp/$name.$run.sum"
  done
done

# --- report --------------------------------------------------------------------------------------------------------
echo
echo "Search on 127.0.0.1 over $db: wrk -t$wrk_threads -c$connections -d$duration (warm-up $warmup); server I/O threads: $io_threads; runs: $runs"
for name in $queries; do echo "  $name: ${described[$name]}"; done
printf '%-18s %4s %10s %9s %9s %8s  %s\n' query run req/s p50_ms p99_ms non-2xx socket-errors
for name in $queries; do
  for run in $(seq "$runs"); do
    read -r rps p50 p99 bad sock <"$tmp/$name.$run.sum"
    printf '%-18s %4s %10s %9s %9s %8s  %s\n' "$name" "$run" "$rps" "$p50" "$p99" "$bad" "$sock"
  done
  if ((runs > 1)); then
    median() { sort -g | awk '{ v[NR] = $1 } END { printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
    m_rps=$(cat "$tmp/$name".*.sum | awk '{ print $1 }' | median)
    m_p50=$(cat "$tmp/$name".*.sum | awk '{ print $2 }' | median)
    m_p99=$(cat "$tmp/$name".*.sum | awk '{ print $3 }' | median)
    bad=$(cat "$tmp/$name".*.sum | awk '{ s += $4 } END { print s }')
    printf '%-18s %4s %10s %9s %9s %8s\n' "$name" median "$m_rps" "$m_p50" "$m_p99" "$bad"
  fi
done
