#!/usr/bin/env bash
# Longer fuzzing of graft's file parsers (recipes, sweep plans, model cards and checkpoints,
# IDX, .npy, image decoding): the property tests of tests/fuzz.rs with many more cases than the
# test suite's 64 per target. Usage: scripts/fuzz.sh [CASES] (default 20000 per target).
# A failure prints the smallest input found; add it as a regression test in tests/fuzz.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each call draws its cases from a fresh seed (printed; GRAFT_FUZZ_SEED=N replays one); the
# test suite always draws from seed 0.
seed="${GRAFT_FUZZ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "fuzz seed: $seed (replay: GRAFT_FUZZ_SEED=$seed scripts/fuzz.sh ${1:-20000})"
GRAFT_FUZZ_SEED="$seed" GRAFT_FUZZ_CASES="${1:-20000}" cargo test --release --locked --test fuzz -- --test-threads 2
