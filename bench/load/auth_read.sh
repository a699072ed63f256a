#!/usr/bin/env bash
# Authenticated reads against unauthenticated ones: the cost of `--auth smart`.
#
#   bench/load/auth_read.sh      (after `make build`, or with CADUCEUS_BIN pointing at the binary)
#
# Creates one Patient on a throwaway SQLite database and registers a confidential client (client_secret_basic)
# allowed system/Patient.rs, then copies the database: one server with --auth off serves the first copy, one with
# --auth smart the second (a SQLite database belongs to one server), both running throughout. It gets a token from
# /auth/token, then runs RUNS pairs of wrk GET /fhir/Patient/{id}, one against each server, the order alternating
# from pair to pair, so that both sides of a pair see the same machine (a shared machine's speed drifts by a third
# within minutes). Prints every pair with its ratio, the median of those ratios (the figure), the ratio of the
# medians, and the median server CPU time per request on each side. Everything it starts is stopped and every file
# it writes is removed on exit.
#
# Environment: RUNS (11), DURATION (wrk -d, 3s), THREADS (wrk -t, 2), CONNECTIONS (wrk -c, 64).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
caduceus_bin=${CADUCEUS_BIN:-$root/build/bin/caduceus}
runs=${RUNS:-11}
duration=${DURATION:-3s}
wrk_threads=${THREADS:-2}
connections=${CONNECTIONS:-64}

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "auth_read.sh: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
[[ -x $caduceus_bin ]] || { echo "auth_read.sh: $caduceus_bin is missing: build it first (make build)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/caduceus-auth.XXXXXX")
pids=()
source "$here/lib.sh"
stop_servers() {
  stop_processes "${pids[@]}"
  pids=()
}
trap 'stop_servers; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# start_server NAME OPTIONS...: a server on $tmp/NAME.db; sets $pid and $base.
start_server() {
  local name=$1
  shift
  "$caduceus_bin" serve --listen 127.0.0.1:0 --db "sqlite:$tmp/$name.db" --data-dir "$tmp/data" "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pid=$!
  pids+=("$pid")
  local line=
  for _ in $(seq 200); do
    line=$(grep -m1 'http://' "$tmp/$name.out" 2>/dev/null || true)
    [[ -n $line ]] && break
    kill -0 "$pid" 2>/dev/null || { echo "auth_read.sh: the server exited:" >&2; cat "$tmp/$name".{out,err} >&2; exit 1; }
    sleep 0.1
  done
  [[ -n $line ]] || { echo "auth_read.sh: no URL printed by the server" >&2; exit 1; }
  base="http://127.0.0.1:$(sed -E 's#.*http://[^:/]+:([0-9]+).*#\1#' <<<"$line")"
  for _ in $(seq 100); do
    curl -sf --max-time 1 -o /dev/null "$base/fhir/metadata" && return 0
    sleep 0.1
  done
  echo "auth_read.sh: the server does not answer at $base" >&2
  exit 1
}

# load PID URL [WRK OPTIONS...]: wrk on URL; prints "req/s p50 p99 cpu_us_per_request" (the last: the CPU time of
# the server PID over the requests it served).
load() {
  local server=$1 url=$2 before after
  shift 2
  before=$(awk '{ print $14 + $15 }' "/proc/$server/stat")
  wrk -t"$wrk_threads" -c"$connections" -d"$duration" --latency "$@" "$url" >"$tmp/wrk.txt"
  after=$(awk '{ print $14 + $15 }' "/proc/$server/stat")
  grep -q 'Non-2xx' "$tmp/wrk.txt" && { echo "auth_read.sh: wrk saw errors:" >&2; cat "$tmp/wrk.txt" >&2; exit 1; }
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    /^Requests\/sec:/ { r = $2 } / requests in / { n = $1 } $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
    END { printf "%s %s %s %.1f\n", r, p50, p99, (n > 0 ? ticks * 1e6 / hz / n : 0) }' "$tmp/wrk.txt"
}

start_server setup --auth off
id=$(curl -sS --max-time 10 -X POST -H 'Content-Type: application/fhir+json' \
  --data-binary '{"resourceType":"Patient","name":[{"family":"Chalmers","given":["Peter"]}],"birthDate":"1974-12-25"}' \
  "$base/fhir/Patient" | sed -E 's/.*"id" *: *"([^"]*)".*/\1/')
read_path="/fhir/Patient/$id"
stop_servers
"$caduceus_bin" admin client add --db "sqlite:$tmp/setup.db" --data-dir "$tmp/data" --id bench \
  --type confidential-symmetric --secret bench-secret-0123456789 --scope system/Patient.rs >/dev/null
cp "$tmp/setup.db" "$tmp/off.db"
cp "$tmp/setup.db" "$tmp/smart.db"

start_server off --auth off
off_pid=$pid off_url=$base$read_path
start_server smart --auth smart
smart_pid=$pid smart_url=$base$read_path
token=$(curl -sS --max-time 10 -u bench:bench-secret-0123456789 -d grant_type=client_credentials \
  -d scope=system/Patient.rs "$base/auth/token" | sed -E 's/.*"access_token" *: *"([^"]*)".*/\1/')
[[ $(curl -s -o /dev/null -w '%{http_code}' "$smart_url") == 401 ]] ||
  { echo "auth_read.sh: a read without a token was not refused" >&2; exit 1; }
[[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$smart_url") == 200 ]] ||
  { echo "auth_read.sh: the token does not read" >&2; exit 1; }
[[ $(curl -s -o /dev/null -w '%{http_code}' "$off_url") == 200 ]] || { echo "auth_read.sh: --auth off does not read" >&2; exit 1; }

off=() on=() ratios=()
for run in $(seq "$runs"); do
  if ((run % 2)); then
    off+=("$(load "$off_pid" "$off_url")")
    on+=("$(load "$smart_pid" "$smart_url" -H "Authorization: Bearer $token")")
  else
    on+=("$(load "$smart_pid" "$smart_url" -H "Authorization: Bearer $token")")
    off+=("$(load "$off_pid" "$off_url")")
  fi
  ratios+=("$(awk -v a="${on[-1]%% *}" -v b="${off[-1]%% *}" 'BEGIN { printf "%.3f", a / b }')")
  echo "pair $run: --auth off ${off[-1]}; --auth smart ${on[-1]} (req/s p50 p99 server-CPU-µs/request)," \
    "ratio ${ratios[-1]}" >&2
done

# median COLUMN LINES...: the median of column COLUMN of the lines.
median() {
  local column=$1
  shift
  printf '%s\n' "$@" | awk -v c="$column" '{ print $c }' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
m_off=$(median 1 "${off[@]}")
m_on=$(median 1 "${on[@]}")
cpu_off=$(median 4 "${off[@]}")
cpu_on=$(median 4 "${on[@]}")
echo "GET $read_path, wrk -t$wrk_threads -c$connections -d$duration, $runs pairs, the order alternating"
echo "median req/s: --auth off $m_off, --auth smart (Bearer token) $m_on"
echo "authenticated / unauthenticated, median of the pairs' ratios: $(median 1 "${ratios[@]}")"
awk -v a="$m_on" -v b="$m_off" 'BEGIN { if (b > 0) printf "authenticated / unauthenticated, ratio of the medians: %.2f\n", a / b }'
echo "median server CPU per request: --auth off $cpu_off µs, --auth smart $cpu_on µs"
