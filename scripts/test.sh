#!/usr/bin/env bash
# Every test of the project, the command the README names and `.ci/run` calls:
#  1. PostgreSQL and Redis on loopback for the scale-out tests
#     (scripts/services.sh: idempotent, installs the Debian packages once);
#  2. the TypeScript workspace (web/): `npm ci` from the lockfile, then lint,
#     `tsc --strict`, build and the Node test runner, which checks every
#     vector in test-vectors/vectors (the build also gives the Rust tests the
#     TypeScript conformance adapter, web/sdk/dist/adapter.js);
#  3. the Rust workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/services.sh)"
(cd web && npm ci --no-audit --no-fund && npm test)
cargo test --workspace --locked
