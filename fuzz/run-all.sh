#!/usr/bin/env bash
# Fuzzes every target for MINUTES minutes each, one after the other, on one
# core, and prints one summary line per target (CPU seconds, executions,
# corpus size, crash artifact if any).
#
#   fuzz/run-all.sh MINUTES [TARGET...]
#
# New corpus entries go to fuzz/corpus/<target>/ (the committed seeds in
# fuzz/seeds/<target>/ and past crashes in fuzz/regressions/<target>/ are
# read too); crashes go to fuzz/artifacts/<target>/.
# Logs: fuzz/target/logs/<target>.log. Needs cargo-fuzz
# (`cargo install cargo-fuzz --locked`); runs on stable via RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"

if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 MINUTES [TARGET...]" >&2
    exit 2
fi
minutes=$1
shift
export RUSTC_BOOTSTRAP=1

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build
mkdir -p target/logs
printf '%-22s %10s %12s %8s  %s\n' target cpu_s execs corpus result
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target" "regressions/$target"
    log="target/logs/$target.log"
    set +e
    # One process (no -jobs/-workers forks): one core. -timeout flags inputs
    # slower than 10 s as hangs.
    /usr/bin/time -f '%U %S' -o "target/logs/$target.time" \
        cargo fuzz run "$target" "corpus/$target" "seeds/$target" "regressions/$target" -- \
        -max_total_time=$((minutes * 60)) -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1
    code=$?
    set -e
    # The last line of the time file is "user system" (a first line may say
    # the command failed).
    cpu=$(tail -n 1 "target/logs/$target.time" | awk '{printf "%.0f", $1 + $2}')
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    size=$(find "corpus/$target" -type f | wc -l)
    if [[ $code -eq 0 ]]; then
        result=ok
    else
        result="FAILED (exit $code): $(grep -o 'artifacts/[^ ]*' "$log" | tail -1)"
        status=1
    fi
    printf '%-22s %10s %12s %8s  %s\n' "$target" "$cpu" "$execs" "$size" "$result"
done
exit $status
