#!/usr/bin/env bash
# The cost of remembering nothing: bench/votes.py against the running stack with the
# API instances' per-instance memories on (the default) and off (NIMBUS_LOCAL_MEMO=0,
# docs/adr/0008), alternating, `runs` times each, so both sides share the machine's
# moods. The API group is restarted between the sides; the stack is left as it was.
#
# Usage: NIMBUS_PROFILE=local|test bench/memo.sh [runs] [votes.py arguments...]
#        (needs the profile's stack up; default 3 runs, votes.py's own defaults)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/local/lib.sh
source "$ROOT/deploy/local/lib.sh"
load_profile
init_services >/dev/null

runs=${1:-3}
shift || true
apis=$(sed -n 's/^NIMBUS_STACK_APIS=//p' "$RUN/stack.env")
workers=$(sed -n 's/^NIMBUS_STACK_WORKERS=//p' "$RUN/stack.env")
[[ -n $apis && -n $workers ]] || die "no stack.env in $RUN: is the $PROFILE stack up?"

api_group_with() {
  local memo=$1
  NIMBUS_LOCAL_MEMO=$memo write_configs "$apis" "$workers" >/dev/null 2>&1
  ctl reread >/dev/null
  ctl update api >/dev/null
  wait_for "gateway :$GATEWAY_PORT with $apis API instances (NIMBUS_LOCAL_MEMO=$memo)" 60 all_instances_answer "$apis"
}

restore() {
  write_configs "$apis" "$workers" >/dev/null 2>&1
  ctl reread >/dev/null
  ctl update api >/dev/null
}
trap restore EXIT

for ((run = 1; run <= runs; run++)); do
  for memo in 1 0; do
    api_group_with "$memo"
    echo "=== run $run of $runs: NIMBUS_LOCAL_MEMO=$memo"
    NIMBUS_STACK_ENV="$RUN/stack.env" /usr/bin/python3 "$ROOT/bench/votes.py" "$@"
  done
done
