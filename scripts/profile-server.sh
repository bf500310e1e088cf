#!/usr/bin/env bash
# Profiles the server (or the load generator) under one load-generator
# workload, the way every issue-17 change was found: a release server on
# loopback with the rate limits off, `perf record -g` of one process while
# `microbot-loadgen <workload>` runs against it, then perf's top symbols.
# Not part of .ci/run. Installs Debian's linux-perf (and strace) once.
#
#   scripts/profile-server.sh logins --total 6000          # perf of the server
#   scripts/profile-server.sh pairs --messages 800
#   PROFILE=loadgen scripts/profile-server.sh logins       # perf of the load generator
#   PROFILE=syscalls scripts/profile-server.sh pairs       # strace -c of the server (pwrite/fsync counts)
#   SERVER_ARGS="--retry-above-handshakes 100000" scripts/profile-server.sh logins
#
# Leaves the recording in target/profile/perf.data (`perf report -i …`) and
# prints the load generator's table row and both processes' CPU seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v perf >/dev/null || ! command -v strace >/dev/null; then
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get install -y linux-perf strace >/dev/null
fi
[ "$#" -ge 1 ] || { sed -n 2,14p "$0"; exit 2; }
cargo build --release -p microbot-server -p microbot-loadgen
out=target/profile
mkdir -p "$out"
data=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
args=(--data-dir "$data" --listen 127.0.0.1:17447 --argon2-memory-kib 64
    --argon2-iterations 1 --max-connections 100000 --max-connections-per-ip 100000
    --totp-skew-steps 2 --queue-sender-share-percent 100)
for limit in login-per-ip login-per-account register-per-ip send-per-account \
    prekey-fetch-per-account upload-per-account group-change-per-account \
    group-change-per-group prekey-upload-per-account prekey-fetch-per-target; do
    args+=("--rate-$limit" 0)
done
# shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
RUST_LOG=warn target/release/microbot-server "${args[@]}" ${SERVER_ARGS:-} \
    >"$out/server.out" 2>"$out/server.err" &
server=$!
for _ in $(seq 100); do grep -q fingerprint "$out/server.out" 2>/dev/null && break; sleep 0.1; done
fingerprint=$(grep -o 'fingerprint: [0-9a-f]*' "$out/server.out" | head -1 | cut -d' ' -f2)
loadgen=(target/release/microbot-loadgen "$@" --server 127.0.0.1:17447 --fingerprint "$fingerprint")
case "${PROFILE:-server}" in
server)
    perf record -F 999 -g -p "$server" -o "$out/perf.data" >/dev/null 2>&1 &
    recorder=$!
    sleep 1 # perf attaches to every thread first
    "${loadgen[@]}" | grep '^| ('
    kill -INT "$recorder"; wait "$recorder" || true
    ;;
loadgen)
    perf record -F 999 -g -o "$out/perf.data" "${loadgen[@]}" 2>/dev/null | grep '^| ('
    ;;
syscalls)
    strace -f -c -e trace=pwrite64,fsync,fdatasync,sendmsg,sendmmsg,recvmsg \
        -p "$server" -o "$out/strace.txt" &
    recorder=$!
    sleep 0.5
    "${loadgen[@]}" | grep '^| ('
    kill -INT "$recorder"; wait "$recorder" || true
    cat "$out/strace.txt"
    ;;
*) echo "PROFILE is server, loadgen or syscalls" >&2; exit 2 ;;
esac
awk '{printf "server CPU s: %.2f\n", ($14 + $15) / 100}' "/proc/$server/stat"
if [ -f "$out/perf.data" ] && [ "${PROFILE:-server}" != syscalls ]; then
    perf report -i "$out/perf.data" --no-children --sort comm,symbol --percent-limit 1.5 \
        --stdio -g none 2>/dev/null | grep '%' | head -30
fi
