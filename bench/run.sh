#!/usr/bin/env bash
# The benchmark command: the ping-pong workload on distzero, turmoil 0.7 (UDP)
# and madsim 0.2 (UDP), release builds, side by side with the ratios; then
# distzero's own scaling table (sim/benches/pingpong.rs: N = 10 .. 10,000 and
# memory per idle machine).
#
#   bench/run.sh            # everything
#   bench/run.sh --peers    # only the side-by-side table
#
# Environment (see bench/peers/src/bin/compare.rs): CASES, DZ_DELIVERIES,
# PEER_DELIVERIES, TIMEOUT_S; PINGPONG_DELIVERIES, PINGPONG_IDLE for the
# scaling table. The peers crate is standalone (not a workspace member) and
# builds into bench/peers/target; madsim needs RUSTFLAGS="--cfg madsim", so
# it gets its own target dir (bench/peers/target/madsim).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
peers="$here/peers"
export CARGO_TERM_COLOR=never

echo "== building (release) =="
cargo build --quiet --release --manifest-path "$peers/Cargo.toml" --features turmoil,distzero --bins
RUSTFLAGS="--cfg madsim" cargo build --quiet --release --manifest-path "$peers/Cargo.toml" \
    --features madsim --bin peer-madsim --target-dir "$peers/target/madsim"

echo
echo "== distzero vs turmoil vs madsim =="
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
PEER_DISTZERO="$peers/target/release/peer-distzero" \
PEER_TURMOIL="$peers/target/release/peer-turmoil" \
PEER_MADSIM="$peers/target/madsim/release/peer-madsim" \
    "$peers/target/release/compare"

if [ "${1:-}" != "--peers" ]; then
    echo
    echo "== distzero scaling (cargo bench -p distzero-sim --bench pingpong) =="
    cd "$here/.."
    cargo bench --quiet -p distzero-sim --bench pingpong
fi
