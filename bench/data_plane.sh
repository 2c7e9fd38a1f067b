#!/usr/bin/env bash
# Data-plane benchmark (not a test): each Nimbus client next to the raw tool doing the
# same work on the same machine in the same run, as a ratio. Needs ./stack up.
# Usage: bench/data_plane.sh [seconds]
set -euo pipefail
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
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rate() { sed -E 's/.*_per_s": ?([0-9.]+).*/\1/'; }
pgbench_tps() { awk '/^tps/ {print $3}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
row() { printf '%-34s %12s   %-30s %12s   ratio %s\n' "$1" "$2" "$3" "$4" "$(ratio "$2" "$4")"; }

echo "== PostgreSQL: SELECT \$1 round trips (${secs}s each)"
echo 'SELECT 1::int;' >"$work/one.sql"
{
  printf '%s\n' '\startpipeline'
  for _ in $(seq 16); do echo 'SELECT 1::int;'; done
  printf '%s\n' '\endpipeline'
} >"$work/pipe.sql"
ours=$("$bench" pg-single "$secs" | rate)
raw=$(pgbench -n -M prepared -f "$work/one.sql" -c 1 -T "$secs" "$NIMBUS_TEST_DATABASE_URL" 2>/dev/null | pgbench_tps)
row "nimbus pg, 1 conn, sequential" "$ours" "pgbench -c1 -M prepared" "$raw"
ours=$("$bench" pg-pipeline "$secs" 16 | rate)
raw=$(pgbench -n -M prepared -f "$work/pipe.sql" -c 1 -T "$secs" "$NIMBUS_TEST_DATABASE_URL" 2>/dev/null | pgbench_tps)
raw=$(awk -v t="$raw" 'BEGIN {print t * 16}')
row "nimbus pg, 1 conn, pipeline 16" "$ours" "pgbench -c1 pipeline 16" "$raw"
ours=$("$bench" pg-pool "$secs" 16 | rate)
raw=$(pgbench -n -M prepared -f "$work/one.sql" -c 16 -j 2 -T "$secs" "$NIMBUS_TEST_DATABASE_URL" 2>/dev/null | pgbench_tps)
row "nimbus pg pool, 16 clients" "$ours" "pgbench -c16 -j2" "$raw"

echo "== Redis: SET+GET, 50 concurrent clients"
redis_port=${NIMBUS_TEST_REDIS_URL##*:}
redis_port=${redis_port%%/*}
ours=$("$bench" redis "$secs" 50 | rate)
raw=$(redis-benchmark -p "$redis_port" -c 50 -n 400000 -d 80 -t set,get -q 2>/dev/null | tr '\r' '\n' |
  awk '/requests per second/ {s += $2; n++} END {print s / n}')
row "nimbus redis, 50 coroutines" "$ours" "redis-benchmark -c50 (avg)" "$raw"

echo "== RabbitMQ: persistent publish with confirms"
amqp_url=$NIMBUS_TEST_AMQP_URL
raw=$(/usr/bin/python3 "$ROOT/bench/amqp_pika.py" "$amqp_url" 2000 | rate)
ours=$("$bench" amqp 2000 1 | rate)
row "nimbus publisher, confirm each" "$ours" "pika, confirm each" "$raw"
ours=$("$bench" amqp 20000 100 | rate)
row "nimbus publisher, batches of 100" "$ours" "pika, confirm each" "$raw"

echo "== S3 (Swift s3api): PUT 10 x 8 MiB"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$work/obj"
cat >"$work/s3cfg" <<CFG
[default]
access_key = $NIMBUS_TEST_S3_ACCESS_KEY
secret_key = $NIMBUS_TEST_S3_SECRET_KEY
host_base = ${NIMBUS_TEST_S3_ENDPOINT#http://}
host_bucket = ${NIMBUS_TEST_S3_ENDPOINT#http://}
bucket_location = $NIMBUS_TEST_S3_REGION
use_https = False
signature_v2 = False
multipart_chunk_size_mb = 64
CFG
ours=$("$bench" s3 10 8 | rate)
began=$(date +%s.%N)
for i in $(seq 10); do s3cmd -c "$work/s3cfg" -q put "$work/obj" "s3://$NIMBUS_TEST_S3_BUCKET/bench-s3cmd/$i"; done
ended=$(date +%s.%N)
raw=$(awk -v a="$began" -v b="$ended" 'BEGIN {printf "%.1f", 80 / (b - a)}')
s3cmd -c "$work/s3cfg" -q del --recursive --force "s3://$NIMBUS_TEST_S3_BUCKET/bench-s3cmd/" >/dev/null
row "nimbus s3 PUT (MiB/s)" "$ours" "s3cmd put (MiB/s)" "$raw"
