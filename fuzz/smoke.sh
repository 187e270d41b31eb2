#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for a short time (default 20 s), so the targets
# cannot rot unnoticed. CI runs this (.ci/run); needs a nightly toolchain and cargo-fuzz.
# Usage: fuzz/smoke.sh [SECONDS_PER_TARGET]
set -euo pipefail
secs=${1:-20}
cd "$(dirname "$0")"
cargo +nightly fuzz build -O
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in $(cargo +nightly fuzz list); do
    start=$(date +%s)
    if ! cargo +nightly fuzz run -O "$t" -- -max_total_time="$secs" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz smoke: $t failed (artifacts in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -n 1 || true)
    echo "fuzz smoke: $t ok (${runs:-no run count}, $(( $(date +%s) - start )) s)"
done
