#!/usr/bin/env bash
# Scale-out benchmark (issue 9): workload (a) of the load generator — 32
# devices in pairs, 256-byte messages, saturation — against 1, 2 and 3
# microbot-server nodes sharing PostgreSQL + Redis (each size on a fresh
# schema and Redis namespace; partners always on different nodes, so every
# message crosses the Redis bus), beside one node on the embedded SQLite.
# Prints one table with the CPU each run cost, by process. Not part of
# .ci/run. Results and conditions: BENCHMARKS.md, "Scale-out".
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
cargo build --release -p microbot-server -p microbot-loadgen
# Many connections from one process: raise the open-files limit if allowed.
ulimit -n 65536 2>/dev/null || true
exec target/release/microbot-loadgen cluster "$@"
