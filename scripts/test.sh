#!/usr/bin/env bash
# The whole test suite: unit tests, simulated-peer flows, real calls between processes, and real
# device I/O through a headless PulseAudio.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh --test
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo build --all-targets
# Unit and simulated-peer tests run in parallel. The tests that run real processes carry
# real-time audio and measure it: one at a time, so a 2-core machine never starves them.
cargo test --lib --bins --test flows --test group_flows --test reconnect_flows --benches 2>&1 | tee -a "$log"
for t in tests/*.rs; do
  name=$(basename "$t" .rs)
  case "$name" in flows | group_flows | reconnect_flows) continue ;; esac
  cargo test --test "$name" -- --test-threads=1 2>&1 | tee -a "$log"
done
# One closing line for the whole suite (each cargo run above printed its own).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "dialtone: %d passed, %d failed\n", p, f }' "$log"
