#!/usr/bin/env bash
# A Redis Cluster on loopback for the cluster-mode tests and benchmarks
# (server/tests/redis_cluster.rs, scripts/bench-cluster.sh): 3 primaries and
# 3 replicas, `redis-server --cluster-enabled yes` on six consecutive ports,
# no persistence. Then prints the `redis` setting that reaches it, for eval:
#
#     eval "$(bash scripts/redis-cluster.sh start)"   # MICROBOT_TEST_REDIS_CLUSTER
#     bash scripts/redis-cluster.sh stop
#
# Settings (environment):
#   REDIS_CLUSTER_PORT          first port (default 7100; uses PORT..PORT+5
#                               and the cluster bus ports PORT+10000..)
#   REDIS_CLUSTER_DIR           data, logs, pid files
#                               (default /tmp/microbot-redis-cluster-PORT)
#   REDIS_CLUSTER_NODE_TIMEOUT  cluster-node-timeout in ms (default 1000:
#                               a killed primary's replica takes over in a
#                               few seconds)
#
# Idempotent: `start` starts only the instances that do not answer, creates
# the cluster only when its slots are not assigned, and returns once every
# node reports cluster_state:ok with every replica attached. `stop` kills
# (SIGKILL) only the instances whose pid files are in REDIS_CLUSTER_DIR.
# Progress goes to stderr; stdout carries only the export line. Needs
# redis-server and redis-cli 7 or newer (sharded pub/sub); scripts/services.sh
# installs them.
set -euo pipefail

PORT=${REDIS_CLUSTER_PORT:-7100}
DIR=${REDIS_CLUSTER_DIR:-/tmp/microbot-redis-cluster-$PORT}
NODE_TIMEOUT=${REDIS_CLUSTER_NODE_TIMEOUT:-1000}
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((PORT + i))); done

log() { echo "redis-cluster: $*" >&2; }
cli() { local p=$1; shift; redis-cli -h 127.0.0.1 -p "$p" "$@"; }

stop() {
    for p in "${PORTS[@]}"; do
        local pidfile="$DIR/redis-$p.pid"
        if [ -f "$pidfile" ]; then
            kill -9 "$(cat "$pidfile")" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
    log "stopped the instances of $DIR"
}

# Every node agrees the cluster is ok and three replicas are attached.
healthy() {
    for p in "${PORTS[@]}"; do
        cli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
    [ "$(cli "${PORTS[0]}" cluster nodes 2>/dev/null | grep -c ' slave ')" = 3 ]
}

start() {
    command -v redis-server >/dev/null || { log "redis-server missing (scripts/services.sh installs it)"; exit 1; }
    mkdir -p "$DIR"
    for p in "${PORTS[@]}"; do
        if cli "$p" ping >/dev/null 2>&1; then continue; fi
        rm -f "$DIR/nodes-$p.conf"
        redis-server --bind 127.0.0.1 --port "$p" --daemonize yes \
            --cluster-enabled yes --cluster-config-file "$DIR/nodes-$p.conf" \
            --cluster-node-timeout "$NODE_TIMEOUT" \
            --cluster-replica-validity-factor 0 \
            --save "" --appendonly no --dir "$DIR" \
            --pidfile "$DIR/redis-$p.pid" --logfile "$DIR/redis-$p.log" >&2
    done
    for p in "${PORTS[@]}"; do
        for _ in $(seq 1 100); do
            if cli "$p" ping >/dev/null 2>&1; then break; fi
            sleep 0.05
        done
        cli "$p" ping >/dev/null
    done
    if ! cli "${PORTS[0]}" cluster info | grep -q '^cluster_slots_assigned:16384'; then
        log "creating the cluster on 127.0.0.1:${PORTS[0]}-${PORTS[5]}"
        local addrs=()
        for p in "${PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
        redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
    fi
    for _ in $(seq 1 200); do
        if healthy; then break; fi
        sleep 0.1
    done
    healthy || { log "the cluster did not become ok (logs in $DIR)"; exit 1; }
    log "Redis Cluster on 127.0.0.1:${PORTS[0]}-${PORTS[5]} is ok"
    local seeds
    seeds=$(printf '127.0.0.1:%s,' "${PORTS[@]}")
    echo "export MICROBOT_TEST_REDIS_CLUSTER=redis+cluster://${seeds%,}/"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) log "usage: $0 [start|stop]"; exit 2 ;;
esac
