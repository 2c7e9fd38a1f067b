#!/usr/bin/env bash
# The base image of every Nimbus image, without a registry: Debian 12 (bookworm)
# bootstrapped with `debootstrap --variant=minbase` from the host's own Debian mirror,
# trimmed (no documentation, manuals, locales or apt lists), imported with
# `podman import` as localhost/nimbus/debian:bookworm.
#
#   deploy/containers/base.sh [--force]
#
# Skipped when the image already exists (--force rebuilds it). Where a registry is
# reachable, `FROM docker.io/library/debian:bookworm-slim` in the Containerfiles does
# the same job (see docs/kubernetes.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
IMAGE=${NIMBUS_BASE_IMAGE:-localhost/nimbus/debian:bookworm}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}

say() { printf '==> %s\n' "$*" >&2; }

if [[ ${1:-} != --force ]] && podman image exists "$IMAGE"; then
  say "base image $IMAGE exists (--force to rebuild)"
  exit 0
fi

# The mirror the host's apt uses (deb822 sources or the one-line format), unless one
# is given: nothing here names a host.
mirror=${NIMBUS_DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
[[ -n $mirror ]] || { echo "error: no Debian mirror found in /etc/apt; set NIMBUS_DEBIAN_MIRROR" >&2; exit 1; }

work="$root/build/containers"
rootfs="$work/rootfs"
mkdir -p "$work"
rm -rf "$rootfs"
started=$SECONDS
say "debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }

# apt inside builds uses the same sources as the host (the main archive, updates and
# security, as the host lists them).
if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
  rm -f "$rootfs/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/*.sources "$rootfs/etc/apt/sources.list.d/"
fi
# Images stay small: no documentation, manuals or locales from later installs either,
# no recommended packages, and apt's lists and caches are removed by every stage.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-nimbus-nodoc" <<'CFG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
CFG
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/01-nimbus-norecommends"
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log "$rootfs"/tmp/* "$rootfs"/root/.bash_history

say "importing as $IMAGE"
tar -C "$rootfs" --numeric-owner -c . |
  podman import -q --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
rm -rf "$rootfs"
say "base image $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec) in $((SECONDS - started)) s"
