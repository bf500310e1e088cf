#!/usr/bin/env bash
# Server load benchmarks (issues 8 and 17): builds the release server and
# load generator, then runs the whole suite — the plain quinn relay floor,
# mosquitto (QoS 1, persistence on) as the peer, RabbitMQ (a quorum queue
# per device, publisher confirms: fsynced before confirmed) as the durable
# peer, and workloads (a)-(d) against the microbot-server binary in a temp
# dir — and prints one table, then every target of issue 17 with met/missed,
# judged from the same run. Not part of .ci/run. Results and conditions:
# BENCHMARKS.md, "Server load".
#
#   scripts/bench-server.sh            # default sizes: a few minutes on 2 cores
#   scripts/bench-server.sh --big      # 10 000 idle connections, 10 000 logins, 128 devices x 1000
#   scripts/bench-server.sh --no-mqtt  # without mosquitto
#   scripts/bench-server.sh --no-amqp  # without RabbitMQ (and without installing it)
#   scripts/bench-server.sh --help     # every size flag
#
# The peers need Debian's mosquitto and rabbitmq-server packages: each
# installed here when missing (root or sudo). The load generator starts its own private
# node (temp dir, free loopback ports, its own epmd) and kills it after its
# row; the package's system service is stopped and disabled so it takes no
# CPU from the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

rabbitmq_script=/usr/lib/rabbitmq/bin/rabbitmq-server
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Idempotent: installs the package only if missing, and makes sure the
# package's own broker (started by apt on machines with an init system) is
# not running.
ensure_rabbitmq() {
    if [ ! -x "$rabbitmq_script" ]; then
        echo "bench-server: installing rabbitmq-server (Debian package) for the durable peer" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >&2 ||
            { as_root apt-get update >&2 &&
              as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >&2; }
    fi
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        as_root systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true
    else
        # Only if its broker runs: the init script's stop runs rabbitmqctl,
        # which would itself leave an epmd on port 4369 behind.
        if pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; then
            as_root service rabbitmq-server stop >/dev/null 2>&1 || true
        fi
        as_root update-rc.d rabbitmq-server disable >/dev/null 2>&1 || true
    fi
}

# The same for mosquitto (the QoS 1 peer); the load generator runs its
# own broker from PATH, so the package's service is stopped too.
ensure_mosquitto() {
    if ! command -v mosquitto >/dev/null; then
        echo "bench-server: installing mosquitto (Debian package) for the MQTT peer" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto >&2 ||
            { as_root apt-get update >&2 &&
              as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto >&2; }
    fi
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        as_root systemctl disable --now mosquitto >/dev/null 2>&1 || true
    else
        as_root service mosquitto stop >/dev/null 2>&1 || true
        as_root update-rc.d mosquitto disable >/dev/null 2>&1 || true
    fi
}

with_amqp=1
with_mqtt=1
for a in "$@"; do
    case "$a" in
        --no-amqp) with_amqp=0 ;;
        --no-mqtt) with_mqtt=0 ;;
        --help | -h) with_amqp=0; with_mqtt=0 ;;
    esac
done
if [ "$with_mqtt" = 1 ]; then ensure_mosquitto; fi
if [ "$with_amqp" = 1 ]; then ensure_rabbitmq; fi

cargo build --release -p microbot-server -p microbot-loadgen --features microbot-loadgen/amqp
# Many connections from one process: raise the open-files limit if allowed.
ulimit -n 65536 2>/dev/null || true
exec target/release/microbot-loadgen suite "$@"
