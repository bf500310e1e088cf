#!/usr/bin/env bash
# Server load benchmarks (issue 8): builds the release server and load
# generator, then runs the whole suite — the plain quinn relay floor,
# mosquitto (QoS 1, persistence on) as the peer, and workloads (a)-(d)
# against the microbot-server binary in a temp dir — and prints one table.
# Not part of .ci/run. Results and conditions: BENCHMARKS.md, "Server load".
#
#   scripts/bench-server.sh            # default sizes: a few minutes on 2 cores
#   scripts/bench-server.sh --big      # 10 000 idle connections, 10 000 logins, 128 devices x 1000
#   scripts/bench-server.sh --no-mqtt  # without mosquitto
#   scripts/bench-server.sh --help     # every size flag
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p microbot-server -p microbot-loadgen
# Many connections from one process: raise the open-files limit if allowed.
ulimit -n 65536 2>/dev/null || true
exec target/release/microbot-loadgen suite "$@"
