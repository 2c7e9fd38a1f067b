#!/usr/bin/env bash
# Data-plane benchmark (not a test): each Nimbus client next to a raw tool doing the same
# work (same statement or command, same size, same concurrency, same pipelining or
# batching) on the same machine in the same run, as a ratio. Needs ./stack up.
# Usage: bench/data_plane.sh [seconds per row]
set -euo pipefail
export LC_ALL=C  # printf %f and awk read and write numbers with a dot
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-8}
env_file=${NIMBUS_STACK_ENV:-$ROOT/.run/local/stack.env}
[[ -f $env_file ]] || { echo "no stack: run ./stack up first" >&2; exit 1; }
set -a
# shellcheck source=/dev/null
source "$env_file"
set +a
bench="$ROOT/build/release/bench/nimbus-bench-data"
[[ -x $bench ]] || cmake --build --preset release --target nimbus-bench-data
py=/usr/bin/python3  # Debian's, with python3-pika and python3-boto3 (deploy/local/install.sh)
"$py" -c 'import pika, boto3' 2>/dev/null || { echo "needs python3-pika and python3-boto3" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rate() { sed -E 's/.*_per_s": ?([0-9.]+).*/\1/'; }
pgbench_tps() { awk '/^tps/ {print $3}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "-"}'; }
printf '%-46s %12s   %-30s %12s   %s\n' "work" "nimbus" "anchor" "anchor" "ratio"
row() { printf '%-46s %12.1f   %-30s %12.1f   %s\n' "$1" "${2:-0}" "$3" "${4:-0}" "$(ratio "${2:-0}" "${4:-0}")"; }

echo "== PostgreSQL: prepared SELECT \$1::int, parameter sent as text (${secs}s each)"
# pgbench -M prepared turns :one into $1 and sends it as a parameter, as Nimbus's client
# does; a pipeline ends with one Sync, as Connection::pipeline does.
printf '%s\n' '\set one 1' 'SELECT :one::int;' >"$work/one.sql"
{
  printf '%s\n' '\set one 1' '\startpipeline'
  for _ in $(seq 16); do echo 'SELECT :one::int;'; done
  printf '%s\n' '\endpipeline'
} >"$work/pipe.sql"
pg() { pgbench -n -M prepared -T "$secs" "$@" "$NIMBUS_TEST_DATABASE_URL" 2>/dev/null | pgbench_tps; }
ours=$("$bench" pg-single "$secs" | rate)
row "pg, 1 conn, one statement per round trip" "$ours" "pgbench -c1" "$(pg -f "$work/one.sql" -c 1)"
ours=$("$bench" pg-pipeline "$secs" 16 | rate)
raw=$(awk -v t="$(pg -f "$work/pipe.sql" -c 1)" 'BEGIN {print t * 16}')
row "pg, 1 conn, pipeline of 16" "$ours" "pgbench -c1 pipeline 16" "$raw"
ours=$("$bench" pg-pool "$secs" 16 | rate)
row "pg, 16 clients (pool of 16 conns)" "$ours" "pgbench -c16 -j2" "$(pg -f "$work/one.sql" -c 16 -j 2)"

echo "== Redis: SET then GET of an 80-byte value per client, ops/s"
# Nimbus's client multiplexes every coroutine over ONE connection (automatic pipelining):
# N coroutines keep up to N commands in flight on it. The like-for-like anchor is one
# redis-benchmark connection with -P N; -c N (N connections, one command each) is printed
# as a reference, not as a pair. redis-benchmark runs SET, then GET: the rate of both is
# their harmonic mean (total commands over total time), sized to about as long as ours.
redis=${NIMBUS_TEST_REDIS_URL#redis://}
redis_auth=()
if [[ $redis == *@* ]]; then
  password=${redis%%@*}
  redis_auth=(-a "${password#:}" --no-auth-warning)
  redis=${redis#*@}
fi
redis_db=${redis#*/}
[[ $redis_db == "$redis" ]] && redis_db=0
redis=${redis%%/*}
redis_args=(-h "${redis%:*}" -p "${redis##*:}" "${redis_auth[@]}" --dbnum "${redis_db:-0}" -d 80 -t "set,get" -q)
# redis-benchmark OPS_PER_S_TO_SIZE_FOR KEYS ARGS...: SET+GET rate.
redis_benchmark() {
  local n
  n=$(awk -v r="$1" -v s="$secs" 'BEGIN {n = int(r * s / 2); print (n < 1000 ? 1000 : n)}')
  timeout $((secs * 6 + 10)) redis-benchmark "${redis_args[@]}" -n "$n" -r "$2" "${@:3}" 2>/dev/null | tr '\r' '\n' |
    awk '/requests per second/ {t += 1 / $2; n++} END {if (n == 2) print n / t; else print 0}'
}
ours=$("$bench" redis "$secs" 1 | rate)
row "redis, 1 client, 1 in flight" "$ours" "redis-benchmark -c1" "$(redis_benchmark "$ours" 1 -c 1)"
ours=$("$bench" redis "$secs" 50 | rate)
row "redis, 50 clients on 1 conn, <=50 in flight" "$ours" "redis-benchmark -c1 -P50" \
  "$(redis_benchmark "$ours" 50 -c 1 -P 50)"
row "  (reference: 50 connections, 1 in flight each)" "$ours" "redis-benchmark -c50" \
  "$(redis_benchmark "$ours" 50 -c 50)"

echo "== RabbitMQ: persistent, mandatory publish to a quorum queue with confirms, msg/s"
each=$((secs * 250))
batched=$((secs * 2500))
amqp() { "$py" "$ROOT/bench/amqp_pika.py" "$NIMBUS_TEST_AMQP_URL" "$@" | rate; }
ours=$("$bench" amqp "$each" 1 | rate)
row "amqp, confirm each ($each msgs)" "$ours" "pika, confirm each" "$(amqp "$each" 1)"
ours=$("$bench" amqp "$batched" 100 | rate)
row "amqp, batches of 100 ($batched msgs)" "$ours" "pika, batches of 100" "$(amqp "$batched" 100)"

echo "== S3 (Swift s3api, SigV4, path-style): PUT 10 x 8 MiB of random bytes, MiB/s"
s3() { "$py" "$ROOT/bench/s3_boto3.py" "$@" | rate; }
for in_flight in 1 4; do
  ours=$("$bench" s3 10 8 "$in_flight" | rate)
  row "s3 PUT, $in_flight in flight" "$ours" "boto3, $in_flight thread(s)" "$(s3 10 8 "$in_flight")"
done
