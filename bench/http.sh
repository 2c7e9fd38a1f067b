#!/usr/bin/env bash
# HTTP core benchmark (not a test): wrk against /healthz through nginx and straight to
# one instance, in the same run, plus start-to-ready time and idle RSS of an instance.
# Needs a running local stack (./stack up). Usage: bench/http.sh [seconds] [connections]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${1:-10}
conns=${2:-64}
env_file=${NIMBUS_STACK_ENV:-$ROOT/.run/local/stack.env}
[[ -f $env_file ]] || { echo "no stack: run ./stack up first" >&2; exit 1; }
# shellcheck source=/dev/null
source "$env_file"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }

run_wrk() {
  local label=$1 url=$2 out rps p50 p99 errors
  out=$(wrk -t2 -c"$conns" -d"${duration}s" --latency "$url")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)
  printf '%-28s %10s req/s   p50 %-8s p99 %-8s %s\n' "$label" "$rps" "$p50" "$p99" "${errors:-no errors}" >&2
  echo "$rps"
}

echo "== wrk -t2 -c$conns -d${duration}s /healthz (same machine, same run)"
gw=$(run_wrk "through nginx (3 instances)" "$NIMBUS_TEST_GATEWAY/healthz")
direct=$(run_wrk "direct to api-1" "http://127.0.0.1:$((NIMBUS_STACK_API_BASE_PORT + 1))/healthz")
awk -v g="$gw" -v d="$direct" 'BEGIN {printf "ratio gateway/direct: %.2f\n", g / d}'

echo "== start to ready (fresh nimbus-api on a free port, 5 runs)"
/usr/bin/python3 "$ROOT/bench/startup.py" "$ROOT/build/release/src/api/nimbus-api" 5 "$NIMBUS_STACK_SUPERVISOR_CONF"

echo "== idle RSS of the running instances"
for ((i = 1; i <= NIMBUS_STACK_APIS; i++)); do
  pid=$(supervisorctl -c "$NIMBUS_STACK_SUPERVISOR_CONF" pid "api:api-$i")
  printf 'api-%d  %s\n' "$i" "$(grep VmRSS "/proc/$pid/status")"
done
