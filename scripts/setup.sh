#!/usr/bin/env bash
# Installs what the tests and the local service stack need, skipping what is there:
#   Debian: victoria-metrics, curl, postgresql        PyPI: confluent-kafka, moto[server] (S3), schemathesis,
#   standardwebhooks + svix (third-party checks of webhook signatures)
#   crates.io: tansu 0.6.0 (the broker; ~8 min to build once), cargo-nextest
# Safe to run repeatedly. Needs root (or sudo) for apt-get on a machine without them.
set -euo pipefail

log() { echo "setup: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  local sudo=""
  if [[ $(id -u) != 0 ]]; then
    have sudo || { log "need root to apt-get install ${missing[*]}"; exit 1; }
    sudo="sudo"
  fi
  log "apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

apt_install victoria-metrics curl postgresql

if ! python3 -c 'import confluent_kafka' 2>/dev/null; then
  log "pip install confluent-kafka"
  python3 -m pip install --quiet confluent-kafka 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages confluent-kafka
fi

if ! python3 -c 'import moto.server' 2>/dev/null; then
  log "pip install moto[server]"
  python3 -m pip install --quiet "moto[server]" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "moto[server]"
fi

if ! python3 -c 'import schemathesis.cli' 2>/dev/null; then
  log "pip install schemathesis (the API fuzzing test)"
  python3 -m pip install --quiet schemathesis 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages schemathesis
fi

if ! python3 -c 'import standardwebhooks, svix' 2>/dev/null; then
  log "pip install standardwebhooks svix (webhook signature checks)"
  python3 -m pip install --quiet standardwebhooks svix 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages standardwebhooks svix
fi

if ! python3 -c 'import duckdb, pyarrow' 2>/dev/null; then
  log "pip install duckdb pyarrow (independent readers of the lake)"
  python3 -m pip install --quiet duckdb pyarrow 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages duckdb pyarrow
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! have tansu; then
  log "cargo install tansu 0.6.0 (one-time, several minutes)"
  cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore --quiet
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "cargo install cargo-nextest"
  cargo install cargo-nextest --locked --quiet
fi
log "ready"
