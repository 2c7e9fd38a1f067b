#!/usr/bin/env bash
# Builds Nimbus's OCI images with podman, without a registry (./stack images runs it
# after the release build and the web build):
#
#   localhost/nimbus/api, localhost/nimbus/worker, localhost/nimbus/gateway
#   (tags :latest and the commit), from deploy/containers/Containerfile and
#   deploy/containers/gateway/Containerfile.
#
# The binaries are the project's release build (build/release), stripped; the web app
# is web/dist. NIMBUS_IMAGES_FROM=source compiles both inside the build instead (the
# Containerfiles' default, as CI does; about half an hour on two cores).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
from=${NIMBUS_IMAGES_FROM:-prebuilt}
base=${NIMBUS_BASE_IMAGE:-localhost/nimbus/debian:bookworm}
tag=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo dev)

say() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

command -v podman >/dev/null || die "podman is missing (deploy/local/install.sh installs it)"
started=$SECONDS
NIMBUS_BASE_IMAGE=$base "$here/base.sh"

if [[ $from == prebuilt ]]; then
  bin="$root/build/containers/bin"
  mkdir -p "$bin"
  for b in api/nimbus-api worker/nimbus-worker; do
    src="$root/build/release/src/$b"
    [[ -x $src ]] || die "$src is missing: build it first (./stack build, or NIMBUS_IMAGES_FROM=source)"
    # Debug information stays on the host (build/release); the image gets the code.
    strip -o "$bin/$(basename "$b")" "$src"
  done
  [[ -f $root/web/dist/index.html ]] || die "web/dist is missing: build the web app first (npm run build --prefix web)"
fi

build() {
  local name=$1 file=$2 target=$3
  shift 3
  local t0=$SECONDS
  say "building localhost/nimbus/$name ($from)"
  podman build --isolation chroot --network host --layers -q -f "$file" --ignorefile "$file.dockerignore" \
    ${target:+--target "$target"} --build-arg BASE="$base" "$@" \
    -t "localhost/nimbus/$name:latest" -t "localhost/nimbus/$name:$tag" "$root" >/dev/null
  say "localhost/nimbus/$name: $(podman image inspect --format '{{.Size}}' "localhost/nimbus/$name:latest" | numfmt --to=iec) ($((SECONDS - t0)) s)"
}
build api "$here/Containerfile" api --build-arg BINARIES="$from"
build worker "$here/Containerfile" worker --build-arg BINARIES="$from"
build gateway "$here/gateway/Containerfile" gateway --build-arg WEB="$from"

# Tags of earlier commits go (their layers with them, once nothing else uses them).
podman images --format '{{.Repository}}:{{.Tag}}' --filter 'reference=localhost/nimbus/*' |
  grep -E '^localhost/nimbus/(api|worker|gateway):' | grep -v -E ":(latest|$tag)\$" |
  xargs -r podman rmi >/dev/null 2>&1 || true
podman image prune -f >/dev/null || true  # dangling layers of earlier builds
say "images built in $((SECONDS - started)) s (tag :latest and :$tag)"
podman images --filter 'reference=localhost/nimbus/*' --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sort >&2
