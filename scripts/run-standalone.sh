#!/usr/bin/env bash
# Runs a standalone Tandem box on loopback with two throwaway backends, as in
# docs/examples/standalone.yaml. Ctrl-C stops everything it started (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p tandem -p tandem-lab --bins
bin=target/debug
state=${TANDEM_STATE_DIR:-build/standalone}
mkdir -p "$state"
socket="$state/tandemd.sock"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$bin/lab-backend" --name web1 --http 127.0.0.1:18081 >/dev/null &
pids+=($!)
"$bin/lab-backend" --name web2 --http 127.0.0.1:18082 >/dev/null &
pids+=($!)
"$bin/tandemd" --config docs/examples/standalone.yaml --state-dir "$state" --control-socket "$socket" &
pids+=($!)

for _ in $(seq 1 100); do
    "$bin/tandemctl" --socket "$socket" status --json >/dev/null 2>&1 && break
    sleep 0.1
done

cat <<MSG

Tandem is running (standalone, on loopback). Try:
  curl http://127.0.0.1:8080/                 # HTTP, balanced over web1 and web2
  curl -k https://127.0.0.1:8443/             # HTTPS, TLS ends on Tandem
  printf 'hello\n' | nc -q1 127.0.0.1 8081    # TCP
  curl -k https://127.0.0.1:9443/metrics      # counters (Prometheus text)
  $bin/tandemctl --socket $socket status      # the box, its services and servers
Edit docs/examples/standalone.yaml and run
  $bin/tandemctl --socket $socket apply docs/examples/standalone.yaml
Ctrl-C stops it all.
MSG
wait "${pids[2]}"
