#!/usr/bin/env bash
# Load test on loopback: our FHIR read against a bare Beast server serving the same bytes, then durable creates.
#
#   bench/load/run.sh            (after `make build`, or with CADUCEUS_BIN / BARE_BIN pointing at the binaries)
#
# Starts build/bin/caduceus on 127.0.0.1:0 with a throwaway SQLite database, creates one Patient, and runs
#   1. wrk GET /fhir/Patient/{id} against caduceus,
#   2. the same against build/bin/bare_beast_server answering with the very bytes and headers of that read,
#   3. wrk POST /fhir/Patient (bench/load/create_patient.lua) against caduceus: each create waits for its commit,
#      then POST /fhir/Observation (create_observation.lua), both indexed for search (the default), and the same
#      Patient creates on a second server started with --search-index false (store only),
# then prints req/s, p50 and p99 of each and the read ratio ours/bare. Everything it starts is stopped and every
# file it writes is removed on exit, whatever the outcome.
#
# Environment: DURATION (wrk -d, default 10s), THREADS (wrk -t, 2), CONNECTIONS (wrk -c, 64), IO_THREADS (server
# I/O threads for both servers, default: the number of cores). The server also reads its own CADUCEUS_* variables
# (e.g. CADUCEUS_LOG_REQUESTS=false to measure without the access log).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
caduceus_bin=${CADUCEUS_BIN:-$root/build/bin/caduceus}
bare_bin=${BARE_BIN:-$root/build/bin/bare_beast_server}
duration=${DURATION:-10s}
wrk_threads=${THREADS:-2}
connections=${CONNECTIONS:-64}
io_threads=${IO_THREADS:-$(nproc)}

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
for bin in "$caduceus_bin" "$bare_bin"; do
  [[ -x $bin ]] || { echo "run.sh: $bin is missing: build it first (make build)" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/caduceus-load.XXXXXX")
pids=()
source "$here/lib.sh"
cleanup() {
  stop_processes "${pids[@]}"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (at most 20 s) for the first line containing http:// in $1 and prints the port in it.
port_from() {
  local file=$1 pid=$2 line
  for _ in $(seq 200); do
    line=$(grep -m1 'http://' "$file" 2>/dev/null || true)
    if [[ -n $line ]]; then
      sed -E 's#.*http://(\[[^]]*\]|[^:/]+):([0-9]+).*#\2#' <<<"$line"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: the server exited:" >&2; cat "$file" "$file.err" >&2 || true; return 1; }
    sleep 0.1
  done
  echo "run.sh: no URL printed within 20 s by the server" >&2
  return 1
}

# Runs wrk (bounded by a timeout), keeps its report in $tmp/$1.txt.
run_wrk() {
  local name=$1; shift
  local seconds=${duration%s}
  [[ $seconds =~ ^[0-9]+$ ]] || seconds=60
  echo "== $name: wrk -t$wrk_threads -c$connections -d$duration --latency $*" >&2
  timeout --kill-after=5 $((seconds + 60)) \
    wrk -t"$wrk_threads" -c"$connections" -d"$duration" --latency "$@" >"$tmp/$name.txt"
  cat "$tmp/$name.txt" >&2
}

# req/s, p50, p99 and the error counts of one wrk report.
summarize() {
  awk '
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = $2 }
    $1 == "99%" { p99 = $2 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    /^[ \t]*Socket errors:/ { sub(/^[ \t]*Socket errors: /, ""); sock = $0 }
    /^not-201:/ { bad = $2 }
    END { printf "%s %s %s %s|%s\n", rps, p50, p99, (bad == "" ? 0 : bad), sock }
  ' "$tmp/$1.txt"
}

# --- caduceus ----------------------------------------------------------------------------------------------------
started_ns=$(date +%s%N)
"$caduceus_bin" serve --listen 127.0.0.1:0 --db "sqlite:$tmp/load.db" --threads "$io_threads" \
  >"$tmp/caduceus.out" 2>"$tmp/caduceus.out.err" &
pids+=($!)
port=$(port_from "$tmp/caduceus.out" "${pids[0]}")
base="http://127.0.0.1:$port/fhir"
# Start to first answer: from launching the process to its first 200 on /fhir/metadata (curl's own start-up
# included, so an upper bound); then its resident memory while idle.
until curl -sf --max-time 1 -o /dev/null "$base/metadata"; do :; done
first_answer_ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
idle_rss_kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/${pids[0]}/status")
echo "caduceus on $base (I/O threads: $io_threads)" >&2

status=$(curl -sS --max-time 10 -o "$tmp/create.body" -D "$tmp/create.headers" -w '%{http_code}' \
  -X POST -H 'Content-Type: application/fhir+json' \
  --data-binary '{"resourceType":"Patient","active":true,"name":[{"family":"Chalmers","given":["Peter","James"]}],"gender":"male","birthDate":"1974-12-25"}' \
  "$base/Patient")
[[ $status == 201 ]] || { echo "run.sh: create answered $status:" >&2; cat "$tmp/create.body" >&2; exit 1; }
id=$(tr -d '\r' <"$tmp/create.headers" | sed -n -E 's#^[Ll]ocation:.*/Patient/([^/]+)(/_history.*)?$#\1#p' | head -n1)
if [[ -z $id ]]; then
  id=$(grep -o '"id" *: *"[^"]*"' "$tmp/create.body" | head -n1 | sed -E 's/.*"([^"]*)"$/\1/')
fi
[[ -n $id ]] || { echo "run.sh: no id in the create response" >&2; exit 1; }
read_path="/fhir/Patient/$id"

status=$(curl -sS --max-time 10 -o "$tmp/read.body" -D "$tmp/read.headers" -w '%{http_code}' \
  "http://127.0.0.1:$port$read_path")
[[ $status == 200 ]] || { echo "run.sh: read answered $status" >&2; exit 1; }

# --- the bare server, same bytes, same headers (except the framing ones and Date, which it sets itself) ---------
bare_args=()
while IFS= read -r header; do
  name=${header%%:*}
  case ${name,,} in
    ''|http/*|date|content-length|connection|transfer-encoding|keep-alive) continue ;;
  esac
  bare_args+=(--header "$header")
done < <(tr -d '\r' <"$tmp/read.headers")
"$bare_bin" "$tmp/read.body" --host 127.0.0.1 --port 0 --threads "$io_threads" "${bare_args[@]}" \
  >"$tmp/bare.out" 2>"$tmp/bare.out.err" &
pids+=($!)
bare_port=$(port_from "$tmp/bare.out" "${pids[1]}")
curl -sS --max-time 10 "http://127.0.0.1:$bare_port$read_path" | cmp -s - "$tmp/read.body" ||
  { echo "run.sh: the bare server does not serve the same bytes" >&2; exit 1; }

# --- load ----------------------------------------------------------------------------------------------------------
run_wrk ours-read "http://127.0.0.1:$port$read_path"
run_wrk bare-read "http://127.0.0.1:$bare_port$read_path"
kill -TERM "${pids[1]}" 2>/dev/null || true  # leave the cores to the creates
run_wrk ours-create -s "$here/create_patient.lua" "$base/Patient"
run_wrk ours-create-obs -s "$here/create_observation.lua" "$base/Observation"

# --- the same Patient creates on a server that only stores (--search-index false): the cost of the index ----------
"$caduceus_bin" serve --listen 127.0.0.1:0 --db "sqlite:$tmp/plain.db" --threads "$io_threads" --search-index false \
  >"$tmp/plain.out" 2>"$tmp/plain.out.err" &
pids+=($!)
plain_port=$(port_from "$tmp/plain.out" "${pids[2]}")
kill -TERM "${pids[0]}" 2>/dev/null || true
run_wrk plain-create -s "$here/create_patient.lua" "http://127.0.0.1:$plain_port/fhir/Patient"

# --- report --------------------------------------------------------------------------------------------------------
read -r ours_rps ours_p50 ours_p99 ours_rest <<<"$(summarize ours-read)"
read -r bare_rps bare_p50 bare_p99 bare_rest <<<"$(summarize bare-read)"
read -r create_rps create_p50 create_p99 create_rest <<<"$(summarize ours-create)"
read -r obs_rps obs_p50 obs_p99 obs_rest <<<"$(summarize ours-create-obs)"
read -r plain_rps plain_p50 plain_p99 plain_rest <<<"$(summarize plain-create)"
echo
echo "Load on 127.0.0.1: wrk -t$wrk_threads -c$connections -d$duration; server I/O threads: $io_threads; body $(wc -c <"$tmp/read.body") bytes"
printf '%-24s %12s %10s %10s  %s\n' "" "req/s" "p50" "p99" "errors (non-2xx or non-201 | socket)"
printf '%-24s %12s %10s %10s  %s\n' "caduceus read" "$ours_rps" "$ours_p50" "$ours_p99" "$ours_rest"
printf '%-24s %12s %10s %10s  %s\n' "bare Beast, same bytes" "$bare_rps" "$bare_p50" "$bare_p99" "$bare_rest"
printf '%-24s %12s %10s %10s  %s\n' "create Patient" "$create_rps" "$create_p50" "$create_p99" "$create_rest"
printf '%-24s %12s %10s %10s  %s\n' "create Observation" "$obs_rps" "$obs_p50" "$obs_p99" "$obs_rest"
printf '%-24s %12s %10s %10s  %s\n' "create Patient, no index" "$plain_rps" "$plain_p50" "$plain_p99" "$plain_rest"
awk -v a="$ours_rps" -v b="$bare_rps" 'BEGIN { if (b > 0) printf "read throughput ours/bare: %.2f\n", a / b }'
echo "start to first answer: ${first_answer_ms} ms; idle RSS: $(( idle_rss_kb / 1024 )) MiB (${idle_rss_kb} kB)"
