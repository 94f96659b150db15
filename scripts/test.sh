#!/usr/bin/env bash
# The whole test suite: unit tests, simulated-peer flows, real calls between processes, and real
# device I/O through a headless PulseAudio.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh --test
# Real-time call tests measure audio; two at a time keeps a 2-core machine from starving them.
cargo test --all-targets -- --test-threads="${DIALTONE_TEST_THREADS:-2}"
