#!/usr/bin/env bash
# Makes sure `debian:bookworm-slim` exists on the local Docker engine, so the Dockerfiles under
# deploy/ build unchanged everywhere:
#   1. already there: nothing to do;
#   2. a registry answers: `docker pull`;
#   3. no registry: build it from Debian's package mirror with debootstrap (minbase) and
#      `docker import` it under the same name (about a minute; needs root for debootstrap).
#
# usage: deploy/images/base-image.sh [--no-pull]
#   MERIDIAN_DEBIAN_MIRROR  the mirror for debootstrap (default http://deb.debian.org/debian)
set -euo pipefail

image=debian:bookworm-slim
mirror=${MERIDIAN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
try_pull=1
[ "${1:-}" = "--no-pull" ] && try_pull=0

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image is present"
  exit 0
fi
if [ "$try_pull" = 1 ] && timeout 60 docker pull -q "$image" >/dev/null 2>&1; then
  echo "$image pulled"
  exit 0
fi

echo "$image is missing and cannot be pulled: building it with debootstrap from $mirror"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if ! command -v debootstrap >/dev/null; then
  $sudo apt-get update -q
  $sudo apt-get install -y -q debootstrap
fi
dir=$(mktemp -d)
trap '$sudo rm -rf "$dir"' EXIT
$sudo debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.log" 2>&1 || {
  tail -20 "$dir.log" >&2
  echo "debootstrap failed (log above)" >&2
  exit 1
}
# What a slim image leaves out: apt lists and caches.
$sudo rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin
$sudo tar -C "$dir" -c . | docker import -c 'CMD ["bash"]' - "$image" >/dev/null
rm -f "$dir.log"
echo "$image built locally ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
