#!/usr/bin/env bash
# Every test of the project, the command the README names and `.ci/run` calls:
#  1. PostgreSQL and Redis on loopback for the scale-out tests
#     (scripts/services.sh: idempotent, installs the Debian packages once);
#  2. the binaries and libraries (`cargo build --lib --bins`): the browser
#     and live interop tests under npm start the binaries (MICROBOT_BIN_DIR),
#     the C and Python binding tests link the static and shared libraries
#     cargo puts next to them (a test build alone leaves those in deps/);
#  3. the TypeScript workspace (web/): `npm ci` from the lockfile, then lint,
#     `tsc --strict`, build and the Node test runner, which checks every
#     vector in test-vectors/vectors (the build also gives the Rust tests the
#     TypeScript conformance adapter, web/sdk/dist/adapter.js);
#  4. the Rust workspace (the same build profile: nothing is built twice),
#     every test binary even after one fails, so a failing run names every
#     failure at once.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/services.sh)"
cargo build --workspace --locked --lib --bins
export MICROBOT_BIN_DIR="$PWD/target/debug"
(cd web && npm ci --no-audit --no-fund && npm test)
cargo test --workspace --locked --no-fail-fast
