#!/usr/bin/env bash
# A Python virtual environment for the binding tests (bindings/uniffi),
# under target/python-env, with pinned packages. Idempotent: creates the
# venv once and installs only what is missing or at another version.
# Prints the venv's python on its last line of standard output.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$PWD/target/python-env"
pins=("pytest==9.2.0")
mkdir -p target
exec 9>"$PWD/target/python-env.lock"
flock 9
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
missing=()
for pin in "${pins[@]}"; do
    name="${pin%%==*}"
    want="${pin##*==}"
    have="$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)"
    [ "$have" = "$want" ] || missing+=("$pin")
done
if [ "${#missing[@]}" -gt 0 ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2
fi
echo "$venv/bin/python"
