#!/usr/bin/env bash
# Installs what dialtone needs on Debian/Ubuntu, skipping what is already there.
#   scripts/setup.sh          build dependencies (C toolchain bits for Opus, ALSA headers)
#   scripts/setup.sh --test   plus what the tests use (PulseAudio, espeak-ng, sox, tmux)
set -euo pipefail

pkgs=(pkg-config cmake clang libasound2-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(pulseaudio pulseaudio-utils espeak-ng sox tmux)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain found; install one with rustup (https://rustup.rs), Rust 1.85 or newer" >&2
    exit 1
  fi
fi
