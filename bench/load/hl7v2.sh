#!/usr/bin/env bash
# HL7 v2 load on loopback: ADT^A01 over MLLP, each stored durably, mapped and acknowledged.
#
#   bench/load/hl7v2.sh          (after `make build`, or with CADUCEUS_BIN / MLLP_LOAD_BIN pointing at the binaries)
#
# Starts build/bin/caduceus serve with --mllp 127.0.0.1:0 on a throwaway SQLite database with --sync-full true
# (every commit fsynced before its ACK goes out), then runs build/bin/mllp_load against it: CONNECTIONS connections,
# each sending distinct ADT^A01 messages (a Patient, an Encounter and the message's Provenance each) and waiting
# for each AA. Prints msg/s, latency percentiles and the server's CPU microseconds per message (from
# /proc/PID/stat), RUNS times on the same server (the database grows from run to run). Everything it starts is
# stopped and every file it writes is removed on exit.
#
# Environment: CONNECTIONS (default 32), DURATION (seconds measured, 10), WARMUP (seconds before, 2), RUNS (1),
# LOAD_ARGS (more mllp_load options, e.g. "--nk1" or "--no-visit"). The server also reads its own CADUCEUS_*
# variables.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
caduceus_bin=${CADUCEUS_BIN:-$root/build/bin/caduceus}
load_bin=${MLLP_LOAD_BIN:-$root/build/bin/mllp_load}
connections=${CONNECTIONS:-32}
duration=${DURATION:-10}
warmup=${WARMUP:-2}
runs=${RUNS:-1}

for bin in "$caduceus_bin" "$load_bin"; do
  [[ -x $bin ]] || { echo "hl7v2.sh: $bin is missing: build it first (make build)" >&2; exit 1; }
done

source "$here/lib.sh"
use_scratch hl7load
trap 'exit 130' INT TERM

"$caduceus_bin" serve --listen 127.0.0.1:0 --mllp 127.0.0.1:0 --db "sqlite:$tmp/hl7.db" --sync-full true \
  --log-requests false >"$tmp/caduceus.out" 2>"$tmp/caduceus.err" &
pid=$!
mllp_port=
for _ in $(seq 200); do
  mllp_port=$(sed -n -E 's/.*MLLP on [^ ]*:([0-9]+).*/\1/p' "$tmp/caduceus.out" | head -n1)
  [[ -n $mllp_port ]] && break
  kill -0 "$pid" 2>/dev/null || { echo "hl7v2.sh: the server exited:" >&2; cat "$tmp/caduceus.out" "$tmp/caduceus.err" >&2; exit 1; }
  sleep 0.1
done
[[ -n $mllp_port ]] || { echo "hl7v2.sh: no MLLP port printed within 20 s" >&2; exit 1; }
echo "caduceus MLLP on 127.0.0.1:$mllp_port (sqlite, --sync-full true); $connections connections, ${duration}s" >&2

for run in $(seq "$runs"); do
  # shellcheck disable=SC2086
  timeout --kill-after=5 $((${duration%.*} + ${warmup%.*} + 60)) \
    "$load_bin" --port "$mllp_port" --connections "$connections" --duration "$duration" --warmup "$warmup" \
    --server-pid "$pid" ${LOAD_ARGS:-} | sed "s/^/run $run: /"
done
