#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`: clang, ASan + UBSan, build/fuzz), makes
# the seed corpus, then runs every target for SECONDS. Fails on any crash, hang
# (-timeout), leak or out-of-memory, and prints executions and coverage per target.
# Installs nothing: clang and libFuzzer's runtime (Debian: clang, libclang-rt-14-dev)
# must be there. The corpus grows in build/fuzz/corpus/ from run to run.
# Usage: tests/fuzz/run.sh [seconds per target, default 10] [results file]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${1:-10}
results=${2:-}
BUILD=$ROOT/build/fuzz
TARGETS=(image multipart jwt json_body resp sigv4 paging)
declare -A DICT=([image]=image [multipart]=multipart [jwt]=json [json_body]=json [resp]=resp [paging]=paging)

fail() {
  echo "fuzz: $*" >&2
  exit 2
}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || fail "seconds must be a positive integer, not '$seconds'"
for tool in clang++ cmake ninja python3; do
  command -v "$tool" >/dev/null || fail "$tool not found (the fuzz targets need clang, libclang-rt-14-dev, cmake, ninja, python3)"
done
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' >"$probe/probe.cpp"
clang++ -fsanitize=fuzzer,address,undefined "$probe/probe.cpp" -o "$probe/probe" 2>"$probe/err" ||
  fail "clang++ cannot link libFuzzer (install libclang-rt-14-dev): $(head -c 300 "$probe/err")"

cd "$ROOT"
echo "== build (preset fuzz → build/fuzz)"
if ! cmake --preset fuzz >"$probe/configure.log" 2>&1; then
  cat "$probe/configure.log" >&2
  fail "configure failed"
fi
cmake --build --preset fuzz

echo "== seed corpus"
python3 tests/fuzz/make_corpus.py "$BUILD/corpus"
mkdir -p "$BUILD/artifacts" "$BUILD/logs"

echo "== ${seconds}s per target"
summary=$(printf '%-10s %12s %9s %7s %7s %7s  %s\n' target executions exec/s cov ft corpus result)
failed=()
for t in "${TARGETS[@]}"; do
  log=$BUILD/logs/$t.log
  args=(-max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1
    -artifact_prefix="$BUILD/artifacts/$t-")
  [[ -n ${DICT[$t]:-} ]] && args+=(-dict="$ROOT/tests/fuzz/dict/${DICT[$t]}.dict")
  rc=0
  "$BUILD/tests/fuzz/fuzz_$t" "${args[@]}" "$BUILD/corpus/$t" >"$log" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")
  result=ok
  if ((rc != 0)) || grep -qE '^==[0-9]+== ?ERROR|runtime error:|fuzz invariant broken' "$log"; then
    result="FAILED (rc $rc)"
    failed+=("$t")
  fi
  row=$(printf '%-10s %12s %9s %7s %7s %7s  %s' "$t" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "${corp:--}" "$result")
  echo "$row"
  summary+=$'\n'"$row"
done

if [[ -n $results ]]; then
  mkdir -p "$(dirname "$results")"
  {
    echo "# tests/fuzz/run.sh $seconds — $(date -u +%FT%TZ), $(nproc) cores, $(clang++ --version | head -1)"
    echo "$summary"
    echo "crashes: ${#failed[@]}"
  } >"$results"
  echo "results: $results"
fi

if ((${#failed[@]})); then
  for t in "${failed[@]}"; do
    echo "---- $t: last lines of $BUILD/logs/$t.log" >&2
    grep -vE '^#[0-9]+|NEW_FUNC' "$BUILD/logs/$t.log" | tail -30 >&2
  done
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}; reproduce with $BUILD/tests/fuzz/fuzz_<target> <artifact in $BUILD/artifacts>" >&2
  exit 1
fi
echo "fuzz: all ${#TARGETS[@]} targets ran ${seconds}s each, no crash, hang, leak or OOM"
