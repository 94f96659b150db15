#!/usr/bin/env bash
# The main job: the terminal softphone on the embedded switchboard. Extra arguments go to dialtone,
# e.g. scripts/run.sh --user alice
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
cargo build --release --quiet
exec target/release/dialtone "$@"
