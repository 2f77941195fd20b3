#!/usr/bin/env bash
# The test command: installs what is missing, starts the local service stack
# (scripts/stack.sh), and runs every test of the workspace. Extra arguments go to
# `cargo nextest run` (e.g. `scripts/test.sh -E 'test(dlq)'`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/veriflow/target}
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
scripts/stack.sh up
cargo nextest run --workspace --no-fail-fast "$@"
