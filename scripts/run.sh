#!/usr/bin/env bash
# The main job: the server with the web app (README "Run the main job").
#  1. builds the web app (web/app/dist) when it is missing or older than its
#     sources or the SDK's: `npm ci` from the lockfile, then the SDK and the
#     app (needs Node.js >= 20.19 and npm);
#  2. runs `cargo run --release -p microbot-server -- <your arguments>`,
#     which serves the app at / on its TCP listener (SPEC.md §12.16).
# Idempotent: a second run with nothing changed goes straight to step 2.
set -euo pipefail
cd "$(dirname "$0")/.."

stale() {
  [ -f web/app/dist/index.html ] || return 0
  [ -n "$(find web/app/src web/app/public web/app/build.mjs web/app/package.json web/sdk/src web/package-lock.json \
    -newer web/app/dist/index.html -print -quit)" ]
}

if stale; then
  if ! command -v npm >/dev/null; then
    echo "run.sh: npm (Node.js >= 20.19) is needed to build the web app; install it and run again." >&2
    exit 1
  fi
  echo "run.sh: building the web app (web/app/dist)…"
  (cd web && npm ci --no-audit --no-fund && npm run build -w @microbot/sdk && npm run build -w @microbot/app)
fi

# The address the app will be at: --listen / MICROBOT_LISTEN, else the default.
listen="${MICROBOT_LISTEN:-127.0.0.1:7447}"
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --listen=*) listen="${args[$i]#--listen=}" ;;
    --listen) listen="${args[$((i + 1))]:-$listen}" ;;
  esac
done
host="${listen%:*}"
port="${listen##*:}"
case "$host" in 127.0.0.1 | "[::1]" | 0.0.0.0 | "[::]") host=localhost ;; esac
echo "run.sh: open https://$host:$port/ in a browser (the certificate is self-signed: accept it once)."
exec cargo run --release -p microbot-server -- "$@"
