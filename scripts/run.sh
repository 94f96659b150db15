#!/usr/bin/env bash
# The main job: the terminal softphone on the embedded switchboard. Extra arguments go to dialtone,
# e.g. scripts/run.sh --user alice
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
if [ ! -x target/release/dialtone ]; then
  echo "Building dialtone (the first build takes several minutes; cargo shows its progress)" >&2
fi
# Not --quiet: a build that has anything to do shows its progress bar.
cargo build --release
exec target/release/dialtone "$@"
