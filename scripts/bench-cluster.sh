#!/usr/bin/env bash
# Scale-out benchmark (issue 9): workload (a) of the load generator — 32
# devices in pairs, 256-byte messages, saturation — against 1, 2 and 3
# microbot-server nodes sharing PostgreSQL + Redis (each size on a fresh
# schema and Redis namespace; partners always on different nodes, so every
# message crosses the Redis bus), beside one node on the embedded SQLite,
# and the largest node count once more on a Redis Cluster (3 primaries + 3
# replicas on loopback, started by scripts/redis-cluster.sh and stopped at
# the end; --no-redis-cluster skips it), and once more behind Debian's nginx
# (stream module: QUIC by a consistent hash of the client's address, every
# client through one address; MICROBOT_NGINX, set by scripts/services.sh).
# Each shared run also reports what it left in PostgreSQL (schema bytes
# after provisioning devices with an SDK-sized prekey upload, and after the
# run) and in Redis (the namespace's keys while every device is connected).
# Prints one table with the CPU each run cost, by process, then the cluster
# targets of issue 17 with met/missed, judged from the same run: 1 node on
# PostgreSQL + Redis against the 1-node SQLite row (so keep the SQLite row
# and node count 1 to judge them), and that node's CPU plus every postgres
# and redis-server process's per delivered message. Not part of .ci/run.
# Results and conditions: BENCHMARKS.md, "Scale-out".
#
#   scripts/bench-cluster.sh                        # default sizes: ~2 minutes on 2 cores
#   scripts/bench-cluster.sh --rate 500             # also each configuration at 500 msg/s offered
#   scripts/bench-cluster.sh --nodes 1,3 --messages 2000
#   scripts/bench-cluster.sh --help                 # every flag
#
# Needs PostgreSQL and Redis: scripts/services.sh installs and starts them
# (root or sudo the first time) and exports the URLs used here
# (MICROBOT_TEST_POSTGRES, MICROBOT_TEST_REDIS; --postgres / --redis override).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/services.sh)"
args=()
with_cluster=1
for a in "$@"; do
    if [ "$a" = --no-redis-cluster ]; then with_cluster=0; else args+=("$a"); fi
done
cargo build --release -p microbot-server -p microbot-loadgen --features microbot-loadgen/amqp
if [ "$with_cluster" = 1 ]; then
    trap 'bash scripts/redis-cluster.sh stop' EXIT
    eval "$(bash scripts/redis-cluster.sh start)"
else
    unset MICROBOT_TEST_REDIS_CLUSTER
fi
# Many connections from one process: raise the open-files limit if allowed.
ulimit -n 65536 2>/dev/null || true
target/release/microbot-loadgen cluster ${args[@]+"${args[@]}"}
