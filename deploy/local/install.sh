#!/usr/bin/env bash
# Installs what Nimbus needs on Debian 12 (as root): the toolchain, the libraries, the
# real services of the local stack, and maildev from npm (pinned). Idempotent: it asks
# apt/npm only for what is missing.
set -euo pipefail

MAILDEV_VERSION="2.2.1"

APT_PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git clang-format clang-tidy shellcheck
  # clang-tidy 19 for the coroutine checks of tests/lint/clang_tidy.py (14 lacks them)
  clang-tidy-19
  # fuzzing (libFuzzer) and sanitizer runtimes
  clang libclang-rt-14-dev llvm
  # libraries
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libssl-dev libpq-dev libhiredis-dev
  librabbitmq-dev libcurl4-openssl-dev libvips-dev libspdlog-dev libfmt-dev libjemalloc-dev libgtest-dev libgmock-dev
  libbenchmark-dev
  # services of the local stack
  postgresql-15 postgresql-client-15 redis-server redis-tools rabbitmq-server memcached nginx supervisor
  swift swift-proxy swift-account swift-container swift-object python3-lxml
  # the load simulation, drills and reports (sim/, ./stack sim|drill|report): Locust, charts,
  # diagrams, PDF pages to images (headless Chromium and fonts-noto-cjk are listed with the browser tests)
  python3-locust python3-matplotlib graphviz poppler-utils
  # tools for tests, benchmarks and the simulation
  curl jq gettext-base iproute2 openssl wrk python3 python3-pytest python3-requests python3-jwt python3-cryptography python3-pil libvips-tools
  python3-pika python3-boto3 python3-yaml python3-jsonschema
  # the browser tests (tests/browser drives it with playwright-core), Korean glyphs
  chromium fonts-noto-cjk
  # container images (./stack images, tests/deploy): podman with runc (crun fails on this
  # host's cgroups), debootstrap for the base image, catatonit for podman's pod infra
  podman runc debootstrap catatonit
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

# Node.js may come from elsewhere than Debian (its own npm included); take Debian's only
# when there is none.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

if ((${#missing[@]} > 0)); then
  echo "==> installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian starts services on install; the stack runs its own copies on other ports.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tools="$root/.tools"
if [[ ! -x "$tools/node_modules/.bin/maildev" ]] ||
  [[ "$(node -p "require('$tools/node_modules/maildev/package.json').version" 2>/dev/null)" != "$MAILDEV_VERSION" ]]; then
  echo "==> installing maildev@$MAILDEV_VERSION (npm) into .tools/"
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" "maildev@$MAILDEV_VERSION" >/dev/null
fi

# The local stack's own programs run as users of their own, never as root: the API and
# the workers each under one (so neither reads the other's /proc/PID/environ, where its
# secrets are), the mail sink under a third (docs/adr/0011).
# The gateway's workers (nobody) get a group of their own: the one that may reach the
# API instances' unix sockets (their folder is nimbus-api:nimbus-gateway 2750).
if ! getent group nimbus-gateway >/dev/null; then
  echo "==> creating system group nimbus-gateway"
  groupadd --system nimbus-gateway
fi
for user in nimbus-api nimbus-worker nimbus-mail; do
  if ! id -u "$user" >/dev/null 2>&1; then
    echo "==> creating system user $user"
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
  fi
done
