#!/usr/bin/env bash
# Builds in release mode and runs the benchmark harness; pass --brokers 127.0.0.1:9092
# (after scripts/stack.sh up) to include the end-to-end measurement, or `webhooks` first
# for the webhook delivery benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/veriflow/target}
cargo build --release -p veriflow -p veriflow-bench
# `bench/run.sh webhooks [--messages N --endpoints E]`: the webhook delivery bench.
# `bench/run.sh scoring [--brokers 127.0.0.1:9092 --rate 5000]`: scoring throughput
# and /v1/route latency.
if [ "${1:-}" = scoring ]; then
    shift
    exec "$CARGO_TARGET_DIR/release/scoring" --veriflow "$CARGO_TARGET_DIR/release/veriflow" "$@"
fi
if [ "${1:-}" = webhooks ]; then
    shift
    exec "$CARGO_TARGET_DIR/release/webhooks" "$@"
fi
exec "$CARGO_TARGET_DIR/release/veriflow-bench" "$@"
