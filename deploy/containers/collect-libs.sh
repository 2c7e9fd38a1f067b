#!/usr/bin/env bash
# Copies into DEST the shared libraries that the given ELF files load (their whole
# closure, as the dynamic loader resolves it here), skipping what the base image
# already has (listed in /etc/nimbus-base-files by the runtime-deps stage). Run inside
# the build stage of deploy/containers/Containerfile:
#
#   collect-libs.sh DEST FILE...
set -euo pipefail

dest=$1
shift
declare -A base=()
if [[ -f /etc/nimbus-base-files ]]; then
  while read -r f; do base[$f]=1; done </etc/nimbus-base-files
fi
copy() {
  local path dir
  # Into the real folder: with a merged /usr, /lib and /lib64 are symlinks in the base,
  # and a folder of that name copied over them would hide the whole of /usr/lib.
  dir=$(readlink -f "$(dirname "$1")")
  path="$dir/$(basename "$1")"
  [[ -n ${base[$path]:-} ]] && return 0
  mkdir -p "$dest$dir"
  # The name the binary asks for (often a symlink) and the file it points to.
  cp -a "$path" "$dest$path"
  if [[ -L $path ]]; then
    local target
    target=$(readlink -f "$path")
    [[ -n ${base[$target]:-} ]] || { mkdir -p "$dest$(dirname "$target")"; cp -a "$target" "$dest$target"; }
  fi
}
count=0
while read -r lib; do
  copy "$lib"
  count=$((count + 1))
done < <(for f in "$@"; do ldd "$f"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
echo "collect-libs: $count libraries for $*" >&2
