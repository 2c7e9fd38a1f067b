#!/usr/bin/env bash
# Functions behind ./stack. Sourced, not run; expects ROOT to be set.

say() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

TEMPLATES="$ROOT/deploy/local/templates"

# The most API instances a stack runs: the gateway lists this many slots, whether an
# instance runs in each or not, so that scaling never reloads it (docs/adr/0012).
API_SLOTS=9

# Settings an operator gives `./stack up` in its environment. `up` keeps them in the run
# folder (settings.env); `scale` and every later step read them from there, so a stack
# keeps what it was started with until the next `up` (which takes its environment's
# values: one not given there is back to its default). `./stack status` shows them.
SETTINGS=(NIMBUS_AUTH_IP_START_PER_MINUTE NIMBUS_AUTH_IP_VERIFY_PER_MINUTE NIMBUS_GATEWAY_AUTH_RATE
  NIMBUS_GATEWAY_AUTH_BURST NIMBUS_LIMIT_POLLS_PER_MINUTE NIMBUS_LIMIT_VOTES_PER_MINUTE
  NIMBUS_LIMIT_UPLOADS_PER_MINUTE NIMBUS_LOCAL_MEMO NIMBUS_VOTE_FLUSHERS NIMBUS_VOTE_MAX_BATCH NIMBUS_LOG_LEVEL)

# Ports and run folder of the chosen profile. Every port can be overridden by
# NIMBUS_<NAME> (e.g. NIMBUS_GATEWAY_PORT=9080); the test profile shifts every default
# by 30000.
load_profile() {
  PROFILE=${NIMBUS_PROFILE:-local}
  local shift_by=0
  case $PROFILE in
    local) shift_by=0 ;;
    test) shift_by=${NIMBUS_TEST_PORT_SHIFT:-30000} ;;  # another shift lets two test runs share a machine
    *) die "NIMBUS_PROFILE must be local or test, not '$PROFILE'" ;;
  esac
  GATEWAY_PORT=${NIMBUS_GATEWAY_PORT:-$((8080 + shift_by))}
  GATEWAY_ADMIN_PORT=${NIMBUS_GATEWAY_ADMIN_PORT:-$((8079 + shift_by))}
  API_BASE_PORT=${NIMBUS_API_BASE_PORT:-$((8100 + shift_by))}
  WORKER_BASE_PORT=${NIMBUS_WORKER_BASE_PORT:-$((8120 + shift_by))}
  OPS_BASE_PORT=${NIMBUS_OPS_BASE_PORT:-$((8150 + shift_by))}
  PG_PORT=${NIMBUS_PG_PORT:-$((5433 + shift_by))}
  REDIS_PORT=${NIMBUS_REDIS_PORT:-$((6380 + shift_by))}
  AMQP_PORT=${NIMBUS_AMQP_PORT:-$((5673 + shift_by))}
  # (next to its AMQP port, so that no profile's lands on another's AMQP port)
  RABBIT_DIST_PORT=${NIMBUS_RABBIT_DIST_PORT:-$((AMQP_PORT + 1000))}
  MEMCACHED_PORT=${NIMBUS_MEMCACHED_PORT:-$((11212 + shift_by))}
  S3_PORT=${NIMBUS_S3_PORT:-$((8090 + shift_by))}
  SWIFT_ACCOUNT_PORT=${NIMBUS_SWIFT_ACCOUNT_PORT:-$((6212 + shift_by))}
  SWIFT_CONTAINER_PORT=${NIMBUS_SWIFT_CONTAINER_PORT:-$((6211 + shift_by))}
  SWIFT_OBJECT_PORT=${NIMBUS_SWIFT_OBJECT_PORT:-$((6210 + shift_by))}
  SMTP_PORT=${NIMBUS_SMTP_PORT:-$((1025 + shift_by))}
  MAILDEV_WEB_PORT=${NIMBUS_MAILDEV_WEB_PORT:-$((1080 + shift_by))}
  RABBIT_NODE="nimbus-$PROFILE@localhost"
  [[ $PROFILE == test && $shift_by != 30000 ]] && RABBIT_NODE="nimbus-test$shift_by@localhost"
  PORT_SHIFT=$shift_by
  RUN=$(run_dir)
  export PORT_SHIFT PROFILE GATEWAY_PORT GATEWAY_ADMIN_PORT API_BASE_PORT WORKER_BASE_PORT OPS_BASE_PORT PG_PORT REDIS_PORT AMQP_PORT \
    RABBIT_DIST_PORT MEMCACHED_PORT S3_PORT SWIFT_ACCOUNT_PORT SWIFT_CONTAINER_PORT SWIFT_OBJECT_PORT SMTP_PORT \
    MAILDEV_WEB_PORT RABBIT_NODE RUN
}

# The run folder holds data of services that run as their own users (postgres,
# rabbitmq, swift), so every folder above it must be traversable by them. A checkout
# under a private home folder is not; then the data lives under /var/lib/nimbus.
run_dir() {
  if [[ -n ${NIMBUS_RUN_DIR:-} ]]; then
    echo "$NIMBUS_RUN_DIR/$PROFILE"
  elif runuser -u nobody -- test -x "$ROOT" 2>/dev/null; then
    echo "$ROOT/.run/$PROFILE"
  else
    echo "/var/lib/nimbus/$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)/$PROFILE"
  fi
}

install_packages() {
  [[ $(id -u) == 0 ]] || die "the local stack installs packages and runs services as their users: run it as root"
  bash "$ROOT/deploy/local/install.sh"
}

# Builds a preset: the targets named after it, or all of them (tests included).
build() {
  local preset=$1
  shift
  say "building ($preset preset${*:+: $*})"
  cmake --preset "$preset" >/dev/null
  if (($#)); then
    cmake --build --preset "$preset" --target "$@"
  else
    cmake --build --preset "$preset"
  fi
}

# What the stack runs: the two binaries. Tests, fuzz targets and benchmarks are built
# by ./stack test (and bench/), not by every ./stack up.
build_stack() { build release nimbus-api nimbus-worker; }

# npm packages of a folder, exactly as its lockfile says, when they changed since the
# last install (npm ci starts from scratch, so it is skipped when nothing changed).
npm_ci() {
  local dir=$1
  if [[ ! -f $dir/node_modules/.package-lock.json || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
    say "installing npm packages of ${dir#"$ROOT"/} (from its package-lock.json)"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
}

# The web app (web/): its API types generated from docs/api/openapi.yaml, type checked
# and bundled by Vite into web/dist (hashed assets, .gz beside each, openapi.json).
# Rebuilt only when a source is newer than the last build.
build_web() {
  local web=$ROOT/web
  # Vite 6 and the browser suite's playwright-core 1.61 run on Debian 12's own Node.js 18.
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
    die "the web app needs Node.js 18 or newer to build (this is $(node --version))"
  npm_ci "$web"
  if [[ -f $web/dist/index.html ]] && [[ -z $(find "$web/src" "$web/public" "$web/index.html" "$web/package-lock.json" \
    "$web/vite.config.ts" "$web/tsconfig.json" "$web/scripts" "$ROOT/docs/api/openapi.yaml" -newer "$web/dist/index.html" -print -quit) ]]; then
    say "web app up to date (web/dist)"
    return
  fi
  say "building the web app (web/ -> web/dist)"
  npm run --prefix "$web" --silent build
}

# The built app into the run folder, where nginx (user nobody) serves it. Assets first,
# the page last, and old hashed assets kept: a page loaded before a deploy still finds
# its scripts.
install_web() {
  [[ -f $ROOT/web/dist/index.html ]] || die "the web app is not built (npm run build in web/, or ./stack up)"
  mkdir -p "$RUN/web/assets"
  cp -R "$ROOT/web/dist/assets/." "$RUN/web/assets/"
  find "$ROOT/web/dist" -maxdepth 1 -type f ! -name 'index.html*' -exec cp {} "$RUN/web/" \;
  cp "$ROOT/web/dist/index.html" "$ROOT/web/dist/index.html.gz" "$RUN/web/"
  chmod -R a+rX "$RUN/web"
}

# The settings of the caller's environment into the run folder (`up`, `test`).
save_settings() {
  local name out=""
  for name in "${SETTINGS[@]}"; do
    [[ -n ${!name:-} ]] || continue
    # (they land in supervisord's and nginx's configs, quoted)
    [[ ${!name} =~ ^[A-Za-z0-9._/:-]+$ ]] || die "$name='${!name}' has characters a setting may not have"
    out+="$name=${!name}"$'\n'
  done
  mkdir -p "$RUN"
  printf '%s' "$out" >"$RUN/settings.env"
}

# The settings kept in the run folder, in place of whatever the caller's environment
# says (`scale`, and everything after `up`).
load_settings() {
  local name line
  for name in "${SETTINGS[@]}"; do unset "$name"; done
  [[ -f $RUN/settings.env ]] || return 0
  while IFS= read -r line; do
    [[ -n $line ]] && export "${line?}"
  done <"$RUN/settings.env"
}

# Says which settings of the caller's environment are not the stack's (they are ignored).
warn_ignored_settings() {
  local name kept
  for name in "${SETTINGS[@]}"; do
    [[ -n ${!name:-} ]] || continue
    kept=$(sed -n "s/^$name=//p" "$RUN/settings.env" 2>/dev/null)
    [[ ${!name} == "$kept" ]] || say "ignoring $name=${!name}: the stack keeps the settings of its ./stack up (${kept:-unset}); change them with ./stack up"
  done
}

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

ensure_secret() {
  local name=$1 bytes=$2
  grep -q "^$name=" "$RUN/secrets.env" || echo "$name=$(random_hex "$bytes")" >>"$RUN/secrets.env"
}

# Folders, secrets, PostgreSQL cluster and Swift rings — once per run folder.
# The run folder only lets others through (0711): each service reaches its own folder
# (postgres, rabbitmq, swift, redis: 0700, theirs), the gateway its web folder, and no
# one but root lists it or reads the configs, which hold the secrets (0600).
init_services() {
  mkdir -p "$RUN"/{logs,nginx,redis,postgres,rabbitmq/mnesia,rabbitmq/log,swift/etc,swift/srv/d1}
  chmod 711 "$RUN"
  chmod 700 "$RUN/logs"
  # Secrets are made once per run folder; ones added by newer versions are appended.
  (
    umask 077
    touch "$RUN/secrets.env"
    ensure_secret PG_PASSWORD 16
    ensure_secret AMQP_PASSWORD 16
    ensure_secret S3_SECRET 16
    ensure_secret SWIFT_HASH 8
    ensure_secret AUTH_CODE_SECRET 32
    ensure_secret GATEWAY_SECRET 24
    ensure_secret REDIS_PASSWORD 24
    ensure_secret PG_API_PASSWORD 16
    ensure_secret PG_WORKER_PASSWORD 16
  )
  chmod 600 "$RUN/secrets.env"
  # shellcheck source=/dev/null
  source "$RUN/secrets.env"
  export PG_PASSWORD AMQP_PASSWORD S3_SECRET SWIFT_HASH AUTH_CODE_SECRET GATEWAY_SECRET REDIS_PASSWORD PG_API_PASSWORD \
    PG_WORKER_PASSWORD
  # The access-token signing key (Ed25519). To rotate: add a new key file, list it
  # first in NIMBUS_JWT_KEYS; keep the old one listed until its tokens have expired.
  if [[ ! -f $RUN/jwt-k1.pem ]]; then
    say "generating the JWT signing key"
    (umask 077 && openssl genpkey -algorithm ed25519 -out "$RUN/jwt-k1.pem")
  fi
  # Only the API signs and verifies tokens.
  chown nimbus-api:nimbus-api "$RUN/jwt-k1.pem"
  chmod 400 "$RUN/jwt-k1.pem"
  export S3_ACCOUNT=nimbus S3_USER=app S3_REGION=us-east-1 S3_BUCKET=nimbus
  export S3_ACCESS_KEY="$S3_ACCOUNT:$S3_USER"

  chown postgres:postgres "$RUN/postgres"
  chmod 700 "$RUN/postgres"
  if [[ ! -f $RUN/postgres/data/PG_VERSION ]]; then
    say "initialising PostgreSQL cluster"
    runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$RUN/postgres/data" -U postgres \
      --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$RUN/logs/initdb.log"
  fi

  chown -R rabbitmq:rabbitmq "$RUN/rabbitmq"
  chown -R redis:redis "$RUN/redis"
  chmod 700 "$RUN/rabbitmq" "$RUN/redis" "$RUN/swift"
  if [[ ! -f $RUN/swift/etc/object.ring.gz ]]; then
    say "building Swift rings"
    local kind port
    for kind in account container object; do
      case $kind in
        account) port=$SWIFT_ACCOUNT_PORT ;;
        container) port=$SWIFT_CONTAINER_PORT ;;
        object) port=$SWIFT_OBJECT_PORT ;;
      esac
      (
        cd "$RUN/swift/etc" || exit 1
        swift-ring-builder "$kind.builder" create 8 1 1 >/dev/null
        swift-ring-builder "$kind.builder" add "r1z1-127.0.0.1:$port/d1" 1 >/dev/null
        swift-ring-builder "$kind.builder" rebalance >/dev/null
      )
    done
  fi
  chown -R swift:swift "$RUN/swift"
}

# Renders a template to `out` ("-" for stdout). Only our variables are substituted;
# nginx's own $variables stay as they are.
render() {
  local template=$1 out=$2 vars
  # shellcheck disable=SC2016 # the literal ${NAME} list is what envsubst expects
  vars=$(printf '${%s} ' RUN ROOT PROFILE GATEWAY_PORT GATEWAY_ADMIN_PORT PG_PORT REDIS_PORT AMQP_PORT \
    RABBIT_DIST_PORT RABBIT_NODE MEMCACHED_PORT S3_PORT SWIFT_ACCOUNT_PORT SWIFT_CONTAINER_PORT \
    SWIFT_OBJECT_PORT SMTP_PORT MAILDEV_WEB_PORT AMQP_PASSWORD S3_SECRET S3_ACCOUNT S3_USER S3_REGION \
    S3_ACCESS_KEY SWIFT_HASH API_UPSTREAMS OPS_UPSTREAMS API_SLOTS GATEWAY_SECRET AUTH_RATE AUTH_BURST BODY_LIMIT \
    UPLOAD_BODY_LIMIT NAME BINARY PORT OPS_PORT HTTP_SOCKET OPS_SOCKET APP_ENV AUTOSTART PROGRAM_USER REDIS_PASSWORD MAILDEV)
  if [[ $out == - ]]; then
    envsubst "$vars" <"$template"
  else
    envsubst "$vars" <"$template" >"$out"
  fi
}

# Environment of nimbus-api (`app_env api`) or nimbus-worker (`app_env worker`), in
# supervisord syntax: each gets only its own secrets (docs/adr/0011) — the API its
# database role, the signing key, the code and gateway secrets; the worker its database
# role, the broker and SMTP. Neither changes the schema: `migrate_schema` does.
app_env() {
  local kind=$1 debug=$2
  local vars=(
    "NIMBUS_REDIS_URL=redis://default:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0"
    "NIMBUS_MIGRATIONS=wait"
    "NIMBUS_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
    "NIMBUS_S3_REGION=$S3_REGION"
    "NIMBUS_S3_BUCKET=$S3_BUCKET"
    "NIMBUS_S3_ACCESS_KEY=$S3_ACCESS_KEY"
    "NIMBUS_S3_SECRET_KEY=$S3_SECRET"
  )
  case $kind in
    api) vars+=(
      "NIMBUS_DATABASE_URL=postgresql://nimbus_api:$PG_API_PASSWORD@127.0.0.1:$PG_PORT/nimbus"
      "NIMBUS_JWT_KEYS=k1=$RUN/jwt-k1.pem"
      "NIMBUS_AUTH_CODE_SECRET=$AUTH_CODE_SECRET"
      "NIMBUS_AUTH_ISSUER=http://127.0.0.1:$GATEWAY_PORT"
      "NIMBUS_GATEWAY_SECRET=$GATEWAY_SECRET"
      "NIMBUS_AUTH_COOKIE_SECURE=0"
    ) ;;
    worker) vars+=(
      "NIMBUS_DATABASE_URL=postgresql://nimbus_worker:$PG_WORKER_PASSWORD@127.0.0.1:$PG_PORT/nimbus"
      "NIMBUS_AMQP_URL=amqp://nimbus:$AMQP_PASSWORD@127.0.0.1:$AMQP_PORT/"
      "NIMBUS_SMTP_HOST=127.0.0.1"
      "NIMBUS_SMTP_PORT=$SMTP_PORT"
    ) ;;
    *) die "app_env: api or worker, not '$kind'" ;;
  esac
  vars+=(
    "NIMBUS_THREADS=1"  # 3 API instances and 2 workers share the machine: one event loop each
    "NIMBUS_S3_THREADS=64"  # a streamed upload holds one storage thread while it lasts
    "NIMBUS_DRAIN_DELAY=1500ms"
    "NIMBUS_SHUTDOWN_TIMEOUT=15s"
    "NIMBUS_DEBUG_ROUTES=$debug"
  )
  # The test stack proves timeouts without waiting for the real ones, and takes every
  # sign-in from one address (the tests), so its per-IP limits are high.
  local ip_default=""
  if [[ $debug == 1 ]]; then
    vars+=("NIMBUS_HTTP_HEADER_TIMEOUT=2s" "NIMBUS_HTTP_BODY_GRACE=2s" "NIMBUS_LIVE_HEARTBEAT=1s" "NIMBUS_TALLY_RECONCILE_INTERVAL=1s" "NIMBUS_IMAGE_SWEEP_INTERVAL=1s" "NIMBUS_IMAGE_STUCK_AFTER=30s" "NIMBUS_AUTH_CODE_TTL=6s" "NIMBUS_AUTH_RESEND_COOLDOWN=2s"
      "NIMBUS_AUTH_REFRESH_GRACE=3s" "NIMBUS_AUTH_DAILY_ATTEMPTS=12" "NIMBUS_AUTH_CLIENT_DAILY_ATTEMPTS=6")
    ip_default=100000
  fi
  # Operator limits given to `./stack up` (settings.env) pass through, in every profile
  # (e.g. a load generator that signs in hundreds of users from one address); unset: the
  # profile's (the app's defaults outside the test profile).
  local limit
  for limit in NIMBUS_AUTH_IP_START_PER_MINUTE NIMBUS_AUTH_IP_VERIFY_PER_MINUTE; do
    if [[ -n ${!limit:-$ip_default} ]]; then vars+=("$limit=${!limit:-$ip_default}"); fi
  done
  # The per-user limits on creating polls, voting and uploading are high in every profile
  # of this stack: its loads come from few accounts (the simulation seeds its polls as
  # one user, bench/images.py uploads as one, bench/votes.py votes thousands a second
  # from 4000), and the e2e suites create what they need as a handful. The app's
  # defaults are for deployments; give NIMBUS_LIMIT_* to `./stack up` to try them (a
  # test that needs a reachable limit starts an instance of its own: tests/e2e/private.py).
  local user_default=1000000
  if [[ $kind == api ]]; then
    for limit in NIMBUS_LIMIT_POLLS_PER_MINUTE NIMBUS_LIMIT_VOTES_PER_MINUTE NIMBUS_LIMIT_UPLOADS_PER_MINUTE; do
      vars+=("$limit=${!limit:-$user_default}")
    done
  fi
  # Tuning set in the environment passes through to every profile: NIMBUS_LOCAL_MEMO=0
  # (instances remember nothing, bench/memo.sh), the ballot box's flushers, the log level.
  local tuning
  for tuning in NIMBUS_LOCAL_MEMO NIMBUS_VOTE_FLUSHERS NIMBUS_VOTE_MAX_BATCH NIMBUS_LOG_LEVEL; do
    if [[ -n ${!tuning:-} ]]; then vars+=("$tuning=${!tuning}"); fi
  done
  local out="" v
  for v in "${vars[@]}"; do out+="${v%%=*}=\"${v#*=}\","; done
  echo "${out%,}"
}

# A program's file as `user` can run it: where it is, or, when the checkout is not
# theirs to reach (under a private home folder), a copy in the run folder (`bin/`),
# swapped in whole so that a running instance keeps its own.
runnable_by() {
  local user=$1 src=$2
  if runuser -u "$user" -- test -x "$src" 2>/dev/null; then
    echo "$src"
    return
  fi
  local copy
  copy="$RUN/bin/$(basename "$src")"
  mkdir -p "$RUN/bin"
  chmod 755 "$RUN/bin"
  if ! cmp -s "$src" "$copy"; then
    install -m 0755 "$src" "$copy.new"
    mv -f "$copy.new" "$copy"
  fi
  echo "$copy"
}

# maildev (npm, in .tools/) as the mail sink's user can run it: see runnable_by.
maildev_for() {
  local user=$1 tools=$ROOT/.tools
  if ! runuser -u "$user" -- test -r "$tools/node_modules/maildev/package.json" 2>/dev/null; then
    if ! cmp -s "$tools/node_modules/maildev/package.json" "$RUN/tools/node_modules/maildev/package.json"; then
      rm -rf "$RUN/tools"
      cp -a "$tools" "$RUN/tools"
      chmod -R a+rX "$RUN/tools"
    fi
    tools=$RUN/tools
  fi
  echo "$tools/node_modules/.bin/maildev"
}

# The slots' ports stay free while no instance listens on them: reserved, so the kernel
# never hands one out as the local port of an outgoing connection (the test profiles'
# ports lie in the ephemeral range; a connection parked on a slot's port would keep its
# instance from starting on a later `scale`). Added to the machine's reserved ports,
# which keep every other reservation.
reserve_slot_ports() {
  local file=/proc/sys/net/ipv4/ip_local_reserved_ports ranges
  [[ -w $file ]] || return 0
  ranges="$((API_BASE_PORT + 1))-$((API_BASE_PORT + API_SLOTS)),$((OPS_BASE_PORT + 1))-$((OPS_BASE_PORT + API_SLOTS))"
  local current
  current=$(<"$file")
  printf '%s\n' "${current:+$current,}$ranges" >"$file" 2>/dev/null || say "could not reserve the API slots' ports ($ranges)"
}

# Every config holds a secret or sits next to one: written 0600, each owned by the
# user of the service that reads it.
write_configs() {
  local apis=$1 workers=$2 umask_before
  umask_before=$(umask)
  umask 077
  reserve_slot_ports
  # The test profile gets debug routes, short timeouts and high per-IP limits.
  local debug=0
  [[ $PROFILE == test ]] && debug=1
  say "writing configs into $RUN ($apis API instances, $workers workers)"
  local rate=20r/s burst=40
  [[ $PROFILE == test ]] && rate=1000r/s burst=2000
  export API_UPSTREAMS="" OPS_UPSTREAMS="" API_SLOTS AUTH_RATE="${NIMBUS_GATEWAY_AUTH_RATE:-$rate}" AUTH_BURST="${NIMBUS_GATEWAY_AUTH_BURST:-$burst}"
  # 1 MiB on every route but the upload route: 25 MiB files and their multipart framing.
  export BODY_LIMIT=1m UPLOAD_BODY_LIMIT=26m
  # The gateway reaches the instances through unix sockets in a folder only nimbus-api
  # may write and only the gateway's group may enter: a slot without an instance is a
  # socket no one else can bind (a free port is anyone's: whoever bound it would get the
  # gateway's secret and the clients' tokens; docs/adr/0013). The instances' ports stay,
  # for local tools, tests and benchmarks; the gateway does not use them.
  install -d -o nimbus-api -g nimbus-gateway -m 2750 "$RUN/sockets"
  local i
  (( ${#RUN} + 20 < 108 )) || die "the run folder's path is too long for unix sockets: $RUN"
  for ((i = 1; i <= API_SLOTS; i++)); do
    API_UPSTREAMS+="    server unix:$RUN/sockets/api-$i.sock max_fails=2 fail_timeout=3s;"$'\n'
    OPS_UPSTREAMS+="    server unix:$RUN/sockets/ops-$i.sock;"$'\n'
  done
  # The config holds the gateway secret: readable by root (the master) only, in a folder
  # root owns; nginx's workers (nobody) write only their scratch folders.
  mkdir -p "$RUN"/nginx/{client_body,proxy,fastcgi,uwsgi,scgi}
  chown root:root "$RUN/nginx"
  chmod 711 "$RUN/nginx"
  chown -R nobody:nogroup "$RUN"/nginx/{client_body,proxy,fastcgi,uwsgi,scgi}
  # Replaced only when it changed: GATEWAY_CHANGED tells start_supervisor whether nginx
  # must re-read it (a reload costs keep-alive clients requests: only when needed).
  GATEWAY_CHANGED=0
  render "$TEMPLATES/nginx.conf" "$RUN/nginx/nginx.conf.new"
  nginx -t -q -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf.new" || die "the rendered gateway config is invalid (see above)"
  if cmp -s "$RUN/nginx/nginx.conf.new" "$RUN/nginx/nginx.conf"; then
    rm "$RUN/nginx/nginx.conf.new"
  else
    mv "$RUN/nginx/nginx.conf.new" "$RUN/nginx/nginx.conf"
    GATEWAY_CHANGED=1
  fi
  install_web
  render "$TEMPLATES/redis.conf" "$RUN/redis/redis.conf"
  chown redis:redis "$RUN/redis/redis.conf"
  render "$TEMPLATES/rabbitmq.conf" "$RUN/rabbitmq/rabbitmq.conf"
  cp "$TEMPLATES/enabled_plugins" "$RUN/rabbitmq/enabled_plugins"
  chown -R rabbitmq:rabbitmq "$RUN/rabbitmq"
  local f
  for f in swift.conf account-server.conf container-server.conf object-server.conf proxy-server.conf; do
    render "$TEMPLATES/$f" "$RUN/swift/etc/$f"
  done
  chown -R swift:swift "$RUN/swift/etc"

  export MAILDEV APP_ENV PROGRAM_USER
  MAILDEV=$(maildev_for nimbus-mail)
  render "$TEMPLATES/supervisord.conf" "$RUN/supervisord.conf"
  local api_binary worker_binary
  api_binary=$(runnable_by nimbus-api "$ROOT/build/release/src/api/nimbus-api")
  worker_binary=$(runnable_by nimbus-worker "$ROOT/build/release/src/worker/nimbus-worker")
  # Every API slot is a program, none started by supervisord itself: which run is the
  # stack's instance count (stack.env), started and stopped one by one (set_api_count),
  # so the group never changes when the count does (supervisord would replace it whole).
  APP_ENV=$(app_env api "$debug") PROGRAM_USER=nimbus-api
  for ((i = 1; i <= API_SLOTS; i++)); do
    NAME="api-$i" BINARY="$api_binary" PORT=$((API_BASE_PORT + i)) OPS_PORT=$((OPS_BASE_PORT + i)) \
      HTTP_SOCKET="$RUN/sockets/api-$i.sock" OPS_SOCKET="$RUN/sockets/ops-$i.sock" AUTOSTART=false render "$TEMPLATES/program-nimbus.conf" - >>"$RUN/supervisord.conf"
  done
  APP_ENV=$(app_env worker "$debug") PROGRAM_USER=nimbus-worker
  for ((i = 1; i <= workers; i++)); do
    NAME="worker-$i" BINARY="$worker_binary" PORT=$((WORKER_BASE_PORT + i)) OPS_PORT=0 HTTP_SOCKET="" OPS_SOCKET="" \
      AUTOSTART=true render "$TEMPLATES/program-nimbus.conf" - >>"$RUN/supervisord.conf"
  done
  {
    echo "[group:api]"
    echo "programs=$(seq -s, -f 'api-%g' 1 "$API_SLOTS")"
    echo "[group:workers]"
    echo "programs=$(seq -s, -f 'worker-%g' 1 "$workers")"
  } >>"$RUN/supervisord.conf"

  # Everything a test or a tool needs to reach this stack.
  cat >"$RUN/stack.env" <<EOF
NIMBUS_STACK_RUN=$RUN
NIMBUS_STACK_SUPERVISOR_CONF=$RUN/supervisord.conf
NIMBUS_STACK_PROFILE=$PROFILE
NIMBUS_STACK_PORT_SHIFT=$PORT_SHIFT
NIMBUS_STACK_APIS=$apis
NIMBUS_STACK_API_SLOTS=$API_SLOTS
NIMBUS_STACK_WORKERS=$workers
NIMBUS_STACK_API_BASE_PORT=$API_BASE_PORT
NIMBUS_STACK_WORKER_BASE_PORT=$WORKER_BASE_PORT
NIMBUS_STACK_OPS_BASE_PORT=$OPS_BASE_PORT
NIMBUS_TEST_GATEWAY=http://127.0.0.1:$GATEWAY_PORT
NIMBUS_TEST_GATEWAY_ADMIN=http://127.0.0.1:$GATEWAY_ADMIN_PORT
NIMBUS_TEST_MAILDEV=http://127.0.0.1:$MAILDEV_WEB_PORT
NIMBUS_TEST_DATABASE_URL=postgresql://nimbus:$PG_PASSWORD@127.0.0.1:$PG_PORT/nimbus
NIMBUS_TEST_PG_ADMIN_SOCKET=$RUN/postgres
NIMBUS_TEST_PG_PORT=$PG_PORT
NIMBUS_TEST_REDIS_URL=redis://default:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0
NIMBUS_TEST_AMQP_URL=amqp://nimbus:$AMQP_PASSWORD@127.0.0.1:$AMQP_PORT/
NIMBUS_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
NIMBUS_TEST_S3_REGION=$S3_REGION
NIMBUS_TEST_S3_BUCKET=$S3_BUCKET
NIMBUS_TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY
NIMBUS_TEST_S3_SECRET_KEY=$S3_SECRET
NIMBUS_TEST_SMTP_PORT=$SMTP_PORT
NIMBUS_TEST_JWT_KEY=$RUN/jwt-k1.pem
NIMBUS_TEST_AUTH_ISSUER=http://127.0.0.1:$GATEWAY_PORT
EOF
  umask "$umask_before"
}

ctl() { supervisorctl -c "$RUN/supervisord.conf" "$@"; }

supervisor_running() {
  [[ -S $RUN/supervisor.sock ]] && ctl pid >/dev/null 2>&1
}

# Before a fresh start: every port of the profile must be free, or a leftover process
# (say, of a test stack killed by hand) would answer in place of ours.
check_ports_free() {
  local port busy=()
  for port in "$GATEWAY_PORT" "$GATEWAY_ADMIN_PORT" "$PG_PORT" "$REDIS_PORT" "$AMQP_PORT" "$RABBIT_DIST_PORT" \
    "$MEMCACHED_PORT" "$S3_PORT" "$SWIFT_ACCOUNT_PORT" "$SWIFT_CONTAINER_PORT" "$SWIFT_OBJECT_PORT" "$SMTP_PORT" \
    "$MAILDEV_WEB_PORT"; do
    [[ -n $(ss -ltnH "sport = :$port" 2>/dev/null) ]] && busy+=("$port")
  done
  ((${#busy[@]} == 0)) || die "ports in use: ${busy[*]} (see: ss -ltnp); stop what holds them, or pick other ports"
}

# Starts the stack, or applies new configs to the running one: the instance count of
# stack.env, nginx told to re-read its config only when it changed (GATEWAY_CHANGED,
# from write_configs; unset: it may have), and a rolling restart for a new build.
start_supervisor() {
  if supervisor_running; then
    say "supervisord already running: applying config changes"
    # New instances wait for the schema they need: it comes first.
    provision_postgres
    migrate_schema
    ctl reread >/dev/null
    ctl update
    set_api_count "$(stack_apis)"
    ctl start workers:* >/dev/null 2>&1 || true
    if [[ ${GATEWAY_CHANGED:-1} == 1 ]]; then
      say "gateway config changed: nginx reloads (idle keep-alive connections of clients close)"
      ctl signal HUP nginx >/dev/null || true
    fi
    rolling_restart
  else
    check_ports_free
    say "starting supervisord"
    # With an environment of its own: the programs inherit it, and this shell's holds
    # every secret of the run folder.
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
      supervisord -c "$RUN/supervisord.conf"
    wait_for "supervisord" 30 supervisor_running
    set_api_count "$(stack_apis)"
  fi
}

stack_apis() { sed -n 's/^NIMBUS_STACK_APIS=//p' "$RUN/stack.env"; }

api_running() { ctl status "api:api-$1" 2>/dev/null | grep -qE 'RUNNING|STARTING|BACKOFF'; }

# Instances api-1..api-N run, the other slots not. One stops as on any stop: /readyz
# 503, the drain delay (longer than nginx's upstream keep-alive), its requests finished;
# the gateway's connects to its slot are then refused and go to the others.
set_api_count() {
  local count=$1 i
  for ((i = 1; i <= count; i++)); do
    api_running "$i" || ctl start "api:api-$i" >/dev/null
  done
  for ((i = count + 1; i <= API_SLOTS; i++)); do
    if api_running "$i"; then
      say "stopping api-$i (drains)"
      ctl stop "api:api-$i" >/dev/null
    fi
  done
}

# Picks up a new build the way a deploy would: one instance at a time, each back to
# ready before the next goes, so the gateway always has instances to send to.
rolling_restart() {
  local program port name
  while read -r program _; do
    name=${program#*:}
    case $name in
      api-*) port=$((API_BASE_PORT + ${name#api-})) ;;
      worker-*) port=$((WORKER_BASE_PORT + ${name#worker-})) ;;
      *) continue ;;
    esac
    say "rolling restart: $name"
    ctl restart "$program" >/dev/null
    wait_for "$name" 30 curl -fsS "http://127.0.0.1:$port/readyz"
  done < <(ctl status | grep -E '^(api|workers):' | grep -E 'RUNNING|STARTING|BACKOFF')
}

stop_supervisor() {
  supervisor_running || return 0
  say "stopping stack '$PROFILE'"
  ctl shutdown >/dev/null || true
  local i
  for ((i = 0; i < 120; i++)); do
    [[ -f $RUN/supervisord.pid ]] && kill -0 "$(cat "$RUN/supervisord.pid")" 2>/dev/null || return 0
    sleep 0.5
  done
  die "supervisord did not stop within 60 s"
}

# Polls `check` (a command) until it succeeds or `seconds` pass.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what not ready after ${seconds}s (see $RUN/logs/)"
    sleep 0.3
  done
  say "$what ready"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pg_admin() { psql -h "$RUN/postgres" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

# Roles and database of the application, created once: `nimbus` owns the schema and
# runs the migrations (and the tests' own statements); `nimbus_api` and `nimbus_worker`
# are the processes', with only the grants of src/store/migrations/0007_process_roles.sql.
provision_postgres() {
  if [[ -z $(pg_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'nimbus'") ]]; then
    pg_admin -c "CREATE ROLE nimbus LOGIN PASSWORD '$PG_PASSWORD'"
  fi
  if [[ -z $(pg_admin -c "SELECT 1 FROM pg_database WHERE datname = 'nimbus'") ]]; then
    pg_admin -c "CREATE DATABASE nimbus OWNER nimbus"
  fi
  local role password
  for role in nimbus_api nimbus_worker; do
    password=$PG_API_PASSWORD
    [[ $role == nimbus_worker ]] && password=$PG_WORKER_PASSWORD
    if [[ -z $(pg_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'") ]]; then
      pg_admin -c "CREATE ROLE $role LOGIN PASSWORD '$password'"
    else
      pg_admin -c "ALTER ROLE $role LOGIN PASSWORD '$password'"
    fi
  done
}

# The migration step: nimbus-api with NIMBUS_MIGRATIONS=only and the schema owner's
# role, nothing else (the instances run with NIMBUS_MIGRATIONS=wait). Idempotent.
migrate_schema() {
  local binary
  binary=$(runnable_by nimbus-api "$ROOT/build/release/src/api/nimbus-api")
  say "migrating the schema (as the schema's owner)"
  if ! runuser -u nimbus-api -- env -i NIMBUS_MIGRATIONS=only NIMBUS_INSTANCE=migrate \
    NIMBUS_DATABASE_URL="postgresql://nimbus:$PG_PASSWORD@127.0.0.1:$PG_PORT/nimbus" "$binary" >>"$RUN/logs/migrate.log" 2>&1; then
    tail -n 5 "$RUN/logs/migrate.log" >&2
    die "migrations failed (see $RUN/logs/migrate.log)"
  fi
}

# The bucket, created through Swift's own API (tempauth) — S3 clients then see it.
provision_bucket() {
  local headers token url
  headers=$(curl -fsS -D - -o /dev/null -H "X-Auth-User: $S3_ACCESS_KEY" -H "X-Auth-Key: $S3_SECRET" \
    "http://127.0.0.1:$S3_PORT/auth/v1.0")
  token=$(printf '%s' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-auth-token"{print $2}')
  url=$(printf '%s' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-storage-url"{print $2}')
  [[ -n $token && -n $url ]] || return 1
  curl -fsS -X PUT -H "X-Auth-Token: $token" "$url/$S3_BUCKET" -o /dev/null
}

# Sees every instance answer through the gateway (round robin, no stickiness).
all_instances_answer() {
  local apis=$1 seen i id
  seen=$(for ((i = 0; i < apis * 3; i++)); do
    curl -fsS -o /dev/null -D - "http://127.0.0.1:$GATEWAY_PORT/readyz" | tr -d '\r' |
      awk -F': ' 'tolower($1)=="x-nimbus-instance"{print $2}'
  done | sort -u)
  for ((i = 1; i <= apis; i++)); do
    id="api-$i"
    grep -qx "$id" <<<"$seen" || return 1
  done
}

wait_ready() {
  local apis=$1
  wait_for "PostgreSQL :$PG_PORT" 60 pg_admin -c "SELECT 1"
  provision_postgres
  migrate_schema
  wait_for "Redis :$REDIS_PORT" 30 env REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -p "$REDIS_PORT" ping
  wait_for "RabbitMQ :$AMQP_PORT" 90 tcp_open "$AMQP_PORT"
  wait_for "Swift s3api :$S3_PORT" 60 curl -fsS "http://127.0.0.1:$S3_PORT/healthcheck"
  wait_for "bucket $S3_BUCKET" 90 provision_bucket  # Swift settles slowly on a loaded machine
  wait_for "maildev :$MAILDEV_WEB_PORT" 30 curl -fsS "http://127.0.0.1:$MAILDEV_WEB_PORT/email"
  wait_for "gateway :$GATEWAY_PORT with $apis API instances" 60 all_instances_answer "$apis"
}

print_urls() {
  cat <<EOF

Nimbus is up (profile '$PROFILE').
  web app            http://127.0.0.1:$GATEWAY_PORT        sign in, polls with live results, photos
  API (gateway)      http://127.0.0.1:$GATEWAY_PORT/v1     e.g. curl -i http://127.0.0.1:$GATEWAY_PORT/readyz; contract: /v1/openapi.json
  web inbox (mail)   http://127.0.0.1:$MAILDEV_WEB_PORT
  S3 (Swift s3api)   http://127.0.0.1:$S3_PORT             bucket '$S3_BUCKET', key '$S3_ACCESS_KEY'
  metrics (private)  http://127.0.0.1:$GATEWAY_ADMIN_PORT/metrics
  processes          ./stack status     logs: ./stack logs [NAME]     stop: ./stack down [--purge]
  connection details $RUN/stack.env
EOF
}

# ./stack scale api=N workers=M: the running stack to N API instances and M workers,
# live, with the settings of its `./stack up` (settings.env, whatever the caller's
# environment says). The gateway already lists every slot (API_SLOTS), so instances are
# started (each ready before the gateway sees it: its connects were refused until then)
# and stopped (each drains) without a reload of nginx: no keep-alive connection of a
# client is closed. Workers take no requests: their group is replaced in one step (jobs
# in flight finish or go back to the queue).
scale_stack() {
  supervisor_running || die "stack '$PROFILE' is not running (./stack up first)"
  local old_apis old_workers apis workers arg
  old_apis=$(stack_apis)
  old_workers=$(sed -n 's/^NIMBUS_STACK_WORKERS=//p' "$RUN/stack.env")
  apis=$old_apis workers=$old_workers
  for arg in "$@"; do
    case $arg in
      api=* | apis=*) apis=${arg#*=} ;;
      worker=* | workers=*) workers=${arg#*=} ;;
      *) die "usage: ./stack scale api=N workers=M" ;;
    esac
  done
  [[ $apis =~ ^[1-9]$ && $workers =~ ^[1-9]$ ]] || die "api and workers must be 1 to 9"
  ((apis <= API_SLOTS)) || die "at most $API_SLOTS API instances (the gateway's slots)"
  warn_ignored_settings
  load_settings
  init_services >/dev/null
  local started=$SECONDS i
  write_configs "$apis" "$workers" >/dev/null 2>&1  # stack.env, the workers' group; nginx.conf stays the same
  if ((GATEWAY_CHANGED)); then
    # (a stack started before the slots, or by another version: the one reload)
    say "gateway config changed: nginx reloads"
    ctl signal HUP nginx >/dev/null
  fi
  if ((apis != old_apis)); then
    say "API instances: $old_apis -> $apis (no gateway reload)"
    set_api_count "$apis"
    for ((i = 1; i <= apis; i++)); do
      wait_for "api-$i" 60 curl -fsS "http://127.0.0.1:$((API_BASE_PORT + i))/readyz"
    done
  fi
  if ((workers != old_workers)); then
    say "workers: $old_workers -> $workers"
    ctl reread >/dev/null
    ctl update workers
    for ((i = 1; i <= workers; i++)); do
      wait_for "worker-$i" 60 curl -fsS "http://127.0.0.1:$((WORKER_BASE_PORT + i))/readyz"
    done
  fi
  wait_for "gateway :$GATEWAY_PORT with $apis API instances" 60 all_instances_answer "$apis"
  say "scaled to $apis API instances and $workers workers in $((SECONDS - started)) s"
}
