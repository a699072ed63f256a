#!/usr/bin/env bash
# `caduceus import` of the Synthea transaction Bundles into a fresh SQLite store, timed, and optionally alternated
# with another build of caduceus (the fair way to compare two builds on a shared host whose speed moves by a third
# within minutes).
#
#   bench/load/import.sh [OTHER_CADUCEUS]      (after `make build`)
#
# RUNS times (default 10): the import with build/bin/caduceus (CADUCEUS_BIN), then, when OTHER_CADUCEUS is given,
# the same with it; each into a new temporary folder, removed after the run. Prints each run's wall and CPU
# (user + system) seconds, then the medians and the resources per second of the medians. SYNTHEA: a folder of
# Bundles (default ../shared/data/synthea-r4 when it is there, else bench/data/synthea-bundle.json).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$here/lib.sh"
caduceus_bin=${CADUCEUS_BIN:-$root/build/bin/caduceus}
other_bin=${1:-}
runs=${RUNS:-10}
synthea=${SYNTHEA:-$root/../shared/data/synthea-r4}
if [[ -d $synthea ]]; then
  files=("$synthea"/*.json)
else
  files=("$root/bench/data/synthea-bundle.json")
fi
use_scratch import

# run LABEL BIN: one import into a new folder; prints "LABEL wall CPU RESOURCES".
run() {
  local label=$1 bin=$2 dir
  dir=$(mktemp -d "$tmp/run.XXXXXX")
  local TIMEFORMAT="%R %U %S"
  { time "$bin" import --db "sqlite:$dir/db" "${files[@]}" >"$dir/out" 2>&1; } 2>"$dir/time"
  local resources
  resources=$(sed -n 's/^Imported \([0-9]*\) resource version.*/\1/p' "$dir/out")
  read -r wall user sys <"$dir/time"
  echo "$label $wall $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') $resources"
  rm -rf "$dir"
}

results=$tmp/results
for _ in $(seq "$runs"); do
  run this "$caduceus_bin" | tee -a "$results"
  if [[ -n $other_bin ]]; then run other "$other_bin" | tee -a "$results"; fi
done
# median COLUMN LABEL: the median of that column over LABEL's runs.
median() {
  grep "^$2 " "$results" | awk -v c="$1" '{ print $c }' | sort -n |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for label in this other; do
  grep -q "^$label " "$results" || continue
  wall=$(median 2 "$label")
  cpu=$(median 3 "$label")
  resources=$(grep "^$label " "$results" | tail -1 | awk '{ print $4 }')
  awk -v l="$label" -v w="$wall" -v c="$cpu" -v n="$resources" -v r="$(grep -c "^$label " "$results")" \
    'BEGIN { printf "%s: %d runs, median %.2f s (%.0f resources/s), CPU median %.2f s\n", l, r, w, n / w, c }'
done
