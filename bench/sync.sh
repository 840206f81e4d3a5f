#!/usr/bin/env bash
# The sync link's figures (docs/performance.md, "Sync"): a snapshot of 1,000,000 persistence
# entries (time and bytes), delta throughput (updates per second), and the lag p99 while the
# dataplane pins 10,000 new sessions per second. Two real endpoints over TLS on loopback, in
# one process (crates/tandem-sync/examples/sync_bench.rs). The last line is
#   sync snapshot_1m_s=… deltas_per_s=… lag_p99_ms=…
# Targets: snapshot under 2 s, over 200,000 deltas per second, lag p99 under 50 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p tandem-sync --example sync_bench
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/examples/sync_bench"
