# Shared by the bench/load scripts: `source "$here/lib.sh"`.

# stop_processes PID...: asks each process to stop (TERM), gives each 10 s to drain and exit, then kills it, and
# reaps it. Children of the calling shell only (it waits for them).
stop_processes() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}

# use_scratch NAME: sets tmp to a new temporary folder (caduceus-NAME.XXXXXX) and pid to empty; on exit, stops the
# process in $pid (when the script has set it) and removes the folder.
use_scratch() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/caduceus-$1.XXXXXX")
  pid=
  trap 'if [[ -n $pid ]]; then stop_processes "$pid"; fi; rm -rf "$tmp"' EXIT
}
