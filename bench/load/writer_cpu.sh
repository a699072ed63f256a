#!/usr/bin/env bash
# CPU per create of the SQLite writer thread and of the whole server, for a wrk script of creates.
#
#   bench/load/writer_cpu.sh BINARY [LUA] [TYPE]     (LUA: default bench/load/create_patient_typed.lua; TYPE: Patient)
#
# Starts BINARY (caduceus) on 127.0.0.1:0 with a fresh, durable SQLite database, runs wrk for a warm-up (WARMUP,
# default 2s) and then for DURATION (default 6s) with THREADS (2) and CONNECTIONS (32), and reads
# /proc/PID/task/*/stat (utime + stime) and /proc/PID/task/*/io (syscw) around the measured run. The writer is the
# thread that used the most CPU. Prints one line: creates, req/s, writer µs/create, writer write syscalls/create,
# server µs/create. Everything it starts is stopped and its files removed on exit. Compare builds by alternating
# runs: the machine's load changes the rate, much less the CPU per create.
# STORE=PATH starts the server on a copy of that SQLite database instead of a fresh one (e.g. the million-resource
# store of bench/load/search.sh; the copy is made in TMPDIR and removed after). RUNS=N measures N consecutive runs
# of DURATION on the same server after the one warm-up, one line each (the store grows from run to run).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$1
lua=${2:-$here/create_patient_typed.lua}
type=${3:-Patient}
warmup=${WARMUP:-2s}
duration=${DURATION:-6s}
threads=${THREADS:-2}
connections=${CONNECTIONS:-32}
source "$here/lib.sh"
runs=${RUNS:-1}
use_scratch writer
if [[ -n ${STORE:-} ]]; then cp "$STORE" "$tmp/db"; fi
"$bin" serve --listen 127.0.0.1:0 --db "sqlite:$tmp/db" >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=
for _ in $(seq 200); do
  port=$(grep -m1 -o 'http://127.0.0.1:[0-9]*' "$tmp/out" 2>/dev/null | sed 's/.*://' || true)
  [[ -n $port ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/out" "$tmp/err" >&2; exit 1; }
  sleep 0.1
done
[[ -n $port ]] || { echo "writer_cpu.sh: no URL from the server" >&2; exit 1; }
url="http://127.0.0.1:$port/fhir/$type"
hz=$(getconf CLK_TCK)
# "tid ticks syscw" per thread.
snapshot() {
  local t
  for t in /proc/"$pid"/task/*; do
    read -r -a f < <(sed 's/^.*) //' "$t/stat")  # fields from the state on: utime is the 12th, stime the 13th
    echo "${t##*/} $((f[11] + f[12])) $(awk '/^syscw/ {print $2}' "$t/io")"
  done
}
wrk -t"$threads" -c"$connections" -d"$warmup" -s "$lua" "$url" >/dev/null
for _ in $(seq "$runs"); do
  snapshot >"$tmp/before"
  wrk -t"$threads" -c"$connections" -d"$duration" -s "$lua" "$url" >"$tmp/wrk"
  snapshot >"$tmp/after"
  requests=$(awk '/requests in/ {print $1}' "$tmp/wrk")
  failed=$(awk '/not-201:/ {print $2}' "$tmp/wrk")
  rate=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk")
  creates=$((requests - failed))
  join "$tmp/before" "$tmp/after" | awk -v n="$creates" -v hz="$hz" -v rate="$rate" '
    { d = $4 - $2; total += d; if (d > wd) { wd = d; ws = $5 - $3 } }
    END { printf "creates %d  req/s %s  writer %.0f us/create  writer syscw %.2f/create  server %.0f us/create\n",
          n, rate, wd * 1e6 / hz / n, ws / n, total * 1e6 / hz / n }'
done
