#!/usr/bin/env bash
# Authenticated reads against unauthenticated ones, on the same database, alternating: the cost of `--auth smart`.
#
#   bench/load/auth_read.sh      (after `make build`, or with CADUCEUS_BIN pointing at the binary)
#
# Creates one Patient on a throwaway SQLite database, registers a confidential client (client_secret_basic) allowed
# system/Patient.rs, then RUNS times (default 3): a server with --auth off and wrk GET /fhir/Patient/{id}; a server
# with --auth smart, a token from /auth/token, and the same wrk with `Authorization: Bearer <token>`. (One server at
# a time: a SQLite database belongs to one server.) Prints every run and the medians, and the ratio of the medians.
# Everything it starts is stopped and every file it writes is removed on exit.
#
# Environment: RUNS (3), DURATION (wrk -d, 10s), THREADS (wrk -t, 2), CONNECTIONS (wrk -c, 64).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
caduceus_bin=${CADUCEUS_BIN:-$root/build/bin/caduceus}
runs=${RUNS:-3}
duration=${DURATION:-10s}
wrk_threads=${THREADS:-2}
connections=${CONNECTIONS:-64}

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "auth_read.sh: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
[[ -x $caduceus_bin ]] || { echo "auth_read.sh: $caduceus_bin is missing: build it first (make build)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/caduceus-auth.XXXXXX")
pid=
stop_server() {
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
trap 'stop_server; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

db="sqlite:$tmp/auth.db"
data="$tmp/data"

# Starts a server with the given extra options; sets $pid and $base.
start_server() {
  rm -f "$tmp/out" "$tmp/err"  # (else the line of the previous server may be read before the shell truncates it)
  "$caduceus_bin" serve --listen 127.0.0.1:0 --db "$db" --data-dir "$data" "$@" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  local line=
  for _ in $(seq 200); do
    line=$(grep -m1 'http://' "$tmp/out" 2>/dev/null || true)
    [[ -n $line ]] && break
    kill -0 "$pid" 2>/dev/null || { echo "auth_read.sh: the server exited:" >&2; cat "$tmp/out" "$tmp/err" >&2; exit 1; }
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

# wrk on the read; prints "req/s p50 p99".
load() {
  wrk -t"$wrk_threads" -c"$connections" -d"$duration" --latency "$@" "$base$read_path" >"$tmp/wrk.txt"
  grep -q 'Non-2xx' "$tmp/wrk.txt" && { echo "auth_read.sh: wrk saw errors:" >&2; cat "$tmp/wrk.txt" >&2; exit 1; }
  awk '/^Requests\/sec:/ { r = $2 } $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 } END { print r, p50, p99 }' \
    "$tmp/wrk.txt"
}

start_server --auth off
id=$(curl -sS --max-time 10 -X POST -H 'Content-Type: application/fhir+json' \
  --data-binary '{"resourceType":"Patient","name":[{"family":"Chalmers","given":["Peter"]}],"birthDate":"1974-12-25"}' \
  "$base/fhir/Patient" | sed -E 's/.*"id" *: *"([^"]*)".*/\1/')
read_path="/fhir/Patient/$id"
stop_server
"$caduceus_bin" admin client add --db "$db" --data-dir "$data" --id bench --type confidential-symmetric \
  --secret bench-secret-0123456789 --scope system/Patient.rs >/dev/null

off=() on=()
for run in $(seq "$runs"); do
  start_server --auth off
  off+=("$(load)")
  stop_server
  start_server --auth smart
  token=$(curl -sS --max-time 10 -u bench:bench-secret-0123456789 -d grant_type=client_credentials -d scope=system/Patient.rs \
    "$base/auth/token" | sed -E 's/.*"access_token" *: *"([^"]*)".*/\1/')
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$base$read_path") == 401 ]] ||
    { echo "auth_read.sh: a read without a token was not refused" >&2; exit 1; }
  [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base$read_path") == 200 ]] ||
    { echo "auth_read.sh: the token does not read" >&2; exit 1; }
  on+=("$(load -H "Authorization: Bearer $token")")
  stop_server
  echo "run $run: --auth off ${off[-1]}; --auth smart ${on[-1]} (req/s p50 p99)" >&2
done

median() { printf '%s\n' "$@" | awk '{ print $1 }' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
m_off=$(median "${off[@]}")
m_on=$(median "${on[@]}")
echo "GET $read_path, wrk -t$wrk_threads -c$connections -d$duration, $runs runs each, alternating"
echo "median req/s: --auth off $m_off, --auth smart (Bearer token) $m_on"
awk -v a="$m_on" -v b="$m_off" 'BEGIN { if (b > 0) printf "authenticated / unauthenticated: %.2f\n", a / b }'
