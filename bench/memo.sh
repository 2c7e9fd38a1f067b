#!/usr/bin/env bash
# The cost of remembering nothing: bench/votes.py against the running stack with the
# API instances' per-instance memories on (the default) and off (NIMBUS_LOCAL_MEMO=0,
# docs/adr/0008), alternating, `runs` times each, so both sides share the machine's
# moods. The API group is restarted between the sides; the stack is left as it was.
# Any other setting the local stack passes to the instances (deploy/local/lib.sh:
# NIMBUS_VOTE_FLUSHERS, NIMBUS_VOTE_MAX_BATCH, NIMBUS_LOG_LEVEL) is compared the same
# way with SETTING and VALUES, e.g. SETTING=NIMBUS_VOTE_FLUSHERS VALUES="1 2"; votes.py
# records the value it finds in the instances' environment.
#
# Usage: NIMBUS_PROFILE=local|test [SETTING=… VALUES="a b"] bench/memo.sh [runs] [votes.py arguments...]
#        (needs the profile's stack up; default 3 runs, votes.py's own defaults)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/local/lib.sh
source "$ROOT/deploy/local/lib.sh"
load_profile
init_services >/dev/null

setting=${SETTING:-NIMBUS_LOCAL_MEMO}
read -r -a values <<<"${VALUES:-1 0}"
runs=${1:-3}
shift || true
apis=$(sed -n 's/^NIMBUS_STACK_APIS=//p' "$RUN/stack.env")
workers=$(sed -n 's/^NIMBUS_STACK_WORKERS=//p' "$RUN/stack.env")
[[ -n $apis && -n $workers ]] || die "no stack.env in $RUN: is the $PROFILE stack up?"

api_group_with() {
  local value=$1
  (
    export "$setting=$value"
    write_configs "$apis" "$workers" >/dev/null 2>&1
  )
  ctl reread >/dev/null
  ctl update api >/dev/null
  wait_for "gateway :$GATEWAY_PORT with $apis API instances ($setting=$value)" 60 all_instances_answer "$apis"
}

restore() {
  write_configs "$apis" "$workers" >/dev/null 2>&1
  ctl reread >/dev/null
  ctl update api >/dev/null
}
trap restore EXIT

for ((run = 1; run <= runs; run++)); do
  for value in "${values[@]}"; do
    api_group_with "$value"
    echo "=== run $run of $runs: $setting=$value"
    NIMBUS_STACK_ENV="$RUN/stack.env" /usr/bin/python3 "$ROOT/bench/votes.py" "$@"
  done
done
