#!/usr/bin/env bash
# Fuzzing benchmark (not a test): every libFuzzer target for minutes rather than the
# seconds `./stack test` gives them, same build, corpus and checks (tests/fuzz/run.sh).
# Writes executions, exec/s, coverage (cov: edges, ft: features), corpus size and the
# crash count to a results file. Needs clang and libclang-rt-14-dev; no stack.
# Usage: bench/fuzz.sh [seconds per target, default 120] [results file]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-120}
results=${2:-$ROOT/build/fuzz/results-$(date -u +%Y%m%dT%H%M%SZ).txt}
echo "== bench/fuzz.sh: ${seconds}s per target, results in $results"
"$ROOT/tests/fuzz/run.sh" "$seconds" "$results"
cat "$results"
