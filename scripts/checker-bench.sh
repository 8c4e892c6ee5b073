#!/usr/bin/env bash
# The checkers' benchmarks, on data kept in the repository (nothing is
# fetched): Porcupine's histories (check/data/porcupine), generated
# list-append histories, and the new checkers under time and memory
# budgets. Each prints wall time and peak resident memory.
#
#     scripts/checker-bench.sh [SECS]    # SECS: each Porcupine check's budget (60)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p distzero-check --examples
examples="${CARGO_TARGET_DIR:-target}/release/examples"
echo "== Porcupine's data"
"$examples/porcupine_bench" "${1:-60}"
echo "== list-append (Elle-style)"
"$examples/elle_bench"
echo "== budgets"
WHAT=bounds "$examples/hard_histories"
