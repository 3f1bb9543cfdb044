#!/usr/bin/env bash
# Longer fuzzing of graft's file parsers (recipes, sweep plans, model cards and checkpoints,
# IDX, .npy, image decoding): the property tests of tests/fuzz.rs with many more cases than the
# test suite's 64 per target. Usage: scripts/fuzz.sh [CASES] (default 20000 per target).
# A failure prints the smallest input found; add it as a regression test in tests/fuzz.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
GRAFT_FUZZ_CASES="${1:-20000}" cargo test --release --locked --test fuzz -- --test-threads 2
