#!/usr/bin/env bash
# Installs what dialtone needs on Debian/Ubuntu, skipping what is already there.
#   scripts/setup.sh          build dependencies (C toolchain bits for Opus, ALSA headers)
#   scripts/setup.sh --test   plus what the tests use (PulseAudio, espeak-ng, sox, tmux, and for
#                             the network-namespace lab in tests/common/netlab.rs: iproute2,
#                             nftables, coturn, openssl)
set -euo pipefail

pkgs=(pkg-config cmake clang libasound2-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(pulseaudio pulseaudio-utils espeak-ng sox tmux iproute2 nftables coturn openssl)
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
  # Packages with a daemon (coturn) must not start it: the tests run their own turnserver inside
  # network namespaces, and nothing may listen in the root namespace. policy-rc.d answering 101
  # is Debian's way to tell maintainer scripts "do not start services"; keep one that exists.
  # (This file is sourced by scripts/test.sh and .ci/run: the setup_ names keep out of their way.)
  setup_policy=/usr/sbin/policy-rc.d
  setup_made_policy=""
  if [[ ! -e $setup_policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$setup_policy" >/dev/null
    $SUDO chmod 755 "$setup_policy"
    setup_made_policy=1
  fi
  setup_status=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null || setup_status=$?
  if [[ -n $setup_made_policy ]]; then $SUDO rm -f "$setup_policy"; fi
  if ((setup_status)); then exit "$setup_status"; fi
  unset setup_policy setup_made_policy setup_status
fi

# Never leave a system-wide TURN server running or enabled (see above).
if [[ "${1:-}" == "--test" ]] && dpkg-query -W -f='${Status}' coturn 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  if [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now coturn >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/coturn ]]; then
    $SUDO /etc/init.d/coturn stop >/dev/null 2>&1 || true
    $SUDO update-rc.d coturn disable >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain found; install one with rustup (https://rustup.rs), Rust 1.85 or newer" >&2
    exit 1
  fi
fi
