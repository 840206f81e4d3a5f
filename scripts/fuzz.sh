#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS each, default 60).
# cargo-fuzz needs nightly features; with only a stable toolchain RUSTC_BOOTSTRAP=1 enables them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
if cargo +nightly --version >/dev/null 2>&1; then
    run=(cargo +nightly fuzz run)
else
    export RUSTC_BOOTSTRAP=1
    run=(cargo fuzz run)
fi
for target in $(cargo fuzz list); do
    echo "== $target ($seconds s)"
    "${run[@]}" "$target" -- -max_total_time="$seconds"
done
