#!/usr/bin/env bash
# Start, stop or inspect the local service stack used by the tests and the Kafka demo:
#   tansu (Kafka-compatible broker, in-memory storage)  127.0.0.1:9092
#   VictoriaMetrics (InfluxDB v2 write API)             127.0.0.1:8428
#   moto (S3-compatible object store, for checkpoints)  127.0.0.1:9000
#   PostgreSQL (the API's store, when configured)       127.0.0.1:55432
# Idempotent: `up` leaves running services alone and waits until each is ready.
# Usage: scripts/stack.sh up|down|status
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${VERIFLOW_STACK_DIR:-$root/var/stack}
kafka_port=${VERIFLOW_KAFKA_PORT:-9092}
vm_port=${VERIFLOW_VM_PORT:-8428}
s3_port=${VERIFLOW_S3_PORT:-9000}
pg_port=${VERIFLOW_PG_PORT:-55432}
# Outside the clone: the server runs as the `postgres` user when we are root, and
# a clone under a private (0700) directory would be unreachable for it.
pg_dir=${VERIFLOW_PG_DIR:-/tmp/veriflow-postgres-$pg_port}
mkdir -p "$state"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, check command, seconds
  local name=$1 check=$2 deadline=$((SECONDS + $3))
  until eval "$check"; do
    if ((SECONDS >= deadline)); then
      echo "stack: $name did not become ready; log: $state/$name.log" >&2
      tail -n 20 "$state/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "stack: '$1' is not installed; run .ci/run or see README.md (Service stack)" >&2; exit 1; }
}

start_tansu() {
  if listening "$kafka_port"; then echo "stack: broker already on :$kafka_port"; return; fi
  need tansu
  nohup tansu broker \
    --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$kafka_port" \
    --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
    >"$state/tansu.log" 2>&1 &
  echo $! >"$state/tansu.pid"
  wait_for tansu "listening $kafka_port" 30
  # The port opens before the broker answers metadata: ask it as a client would.
  wait_for tansu "python3 '$root/tests/kafka_client.py' ping --brokers 127.0.0.1:$kafka_port >/dev/null 2>&1" 30
  echo "stack: broker ready on 127.0.0.1:$kafka_port"
}

start_vm() {
  if listening "$vm_port"; then echo "stack: VictoriaMetrics already on :$vm_port"; return; fi
  need victoria-metrics
  nohup victoria-metrics \
    -httpListenAddr "127.0.0.1:$vm_port" \
    -storageDataPath "$state/victoria-metrics-data" \
    -retentionPeriod 100y \
    >"$state/victoria-metrics.log" 2>&1 &
  echo $! >"$state/victoria-metrics.pid"
  wait_for victoria-metrics "curl -fsS http://127.0.0.1:$vm_port/health >/dev/null 2>&1" 30
  echo "stack: VictoriaMetrics ready on 127.0.0.1:$vm_port"
}

start_s3() {
  if listening "$s3_port"; then echo "stack: S3 already on :$s3_port"; return; fi
  python3 -c 'import moto.server' 2>/dev/null \
    || { echo "stack: moto is not installed; run scripts/setup.sh" >&2; exit 1; }
  # The module, not the moto_server script: a fresh pip install may not have put
  # the script on PATH (pyenv shims need a rehash).
  nohup python3 -m moto.server -H 127.0.0.1 -p "$s3_port" \
    >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  wait_for moto "curl -fsS http://127.0.0.1:$s3_port/ >/dev/null 2>&1" 30
  echo "stack: S3 (moto) ready on 127.0.0.1:$s3_port"
}

pg_bin() { # the newest installed PostgreSQL's bin directory (Debian keeps it off PATH)
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $dir ]] || { echo "stack: PostgreSQL is not installed; run scripts/setup.sh" >&2; exit 1; }
  echo "$dir"
}

as_pg() { # PostgreSQL refuses to run as root
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  if listening "$pg_port"; then echo "stack: PostgreSQL already on :$pg_port"; return; fi
  local bin; bin=$(pg_bin)
  mkdir -p "$pg_dir"
  [[ $(id -u) == 0 ]] && chown postgres: "$pg_dir"
  if [[ ! -f $pg_dir/data/PG_VERSION ]]; then
    as_pg "$bin/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 >"$state/postgres-init.log" 2>&1 \
      || { echo "stack: initdb failed; log: $state/postgres-init.log" >&2; tail -n 20 "$state/postgres-init.log" >&2; exit 1; }
  fi
  as_pg "$bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 30 \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $pg_dir -c fsync=off" start >/dev/null \
    || { echo "stack: PostgreSQL did not start; log: $pg_dir/postgres.log" >&2; tail -n 20 "$pg_dir/postgres.log" >&2; exit 1; }
  echo "stack: PostgreSQL ready on 127.0.0.1:$pg_port (user postgres, trust)"
}

stop_postgres() {
  [[ -f $pg_dir/data/postmaster.pid ]] || return 0
  as_pg "$(pg_bin)/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null && echo "stack: stopped postgres"
}

stop() {
  local name=$1
  if [[ -f "$state/$name.pid" ]]; then
    local pid; pid=$(cat "$state/$name.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "stack: stopped $name"
    fi
    rm -f "$state/$name.pid"
  fi
}

case "${1:-}" in
  up) start_tansu; start_vm; start_s3; start_postgres ;;
  down) stop tansu; stop victoria-metrics; stop moto; stop_postgres ;;
  status)
    listening "$kafka_port" && echo "broker: up (:$kafka_port)" || echo "broker: down"
    listening "$vm_port" && echo "victoria-metrics: up (:$vm_port)" || echo "victoria-metrics: down"
    listening "$s3_port" && echo "s3 (moto): up (:$s3_port)" || echo "s3 (moto): down"
    listening "$pg_port" && echo "postgres: up (:$pg_port)" || echo "postgres: down" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
