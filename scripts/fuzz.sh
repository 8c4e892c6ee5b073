#!/usr/bin/env bash
# Fuzz the agent's attack surface with cargo-fuzz (libFuzzer, nightly):
#   frames          every frame decoder on arbitrary bytes
#   handshake       both handshake sides against an adversary's bytes
#   agent_commands  a real agent under whatever frames a controller sends
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60, all)
#
# Starts from the committed seeds (fuzz/seeds/<target>) plus what earlier
# runs found (fuzz/corpus/<target>, not committed); a crash leaves its input
# in fuzz/artifacts/<target>/ and makes the script fail. Prints each
# target's executions.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frames handshake agent_commands)
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]"; exit 2; }
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    log=$(mktemp)
    if cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
        tail -n 40 "$log"
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz $t: $result, $runs executions in ${secs} s"
    rm -f "$log"
done
exit $status
