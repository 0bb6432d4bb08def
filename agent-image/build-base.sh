#!/usr/bin/env bash
# Makes berth's Debian base image without an image registry: debootstrap
# from the Debian package mirror, then `docker import`. Idempotent: an
# existing image is kept (pass --rebuild to make it again).
#
#   agent-image/build-base.sh [--rebuild] [tag]      (default tag: berth-base:bookworm)
#
# Settings: BERTH_DEBIAN_SUITE (bookworm), BERTH_DEBIAN_MIRROR
# (http://deb.debian.org/debian), BERTH_BASE_PACKAGES (extra packages,
# comma-separated).
set -euo pipefail

rebuild=0
if [ "${1:-}" = "--rebuild" ]; then rebuild=1; shift; fi
tag="${1:-berth-base:bookworm}"
suite="${BERTH_DEBIAN_SUITE:-bookworm}"
mirror="${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# iptables: berth-control runs on this base and installs the egress firewall;
# iproute2: it tunes ARP on the sandbox bridges (`ip ntable`).
packages="ca-certificates,git,curl,procps,iptables,iproute2${BERTH_BASE_PACKAGES:+,$BERTH_BASE_PACKAGES}"
# Bumped when the package list changes: older images are rebuilt.
version=3

if [ "$rebuild" -eq 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  have="$(docker image inspect -f '{{index .Config.Labels "berth.base.version"}}' "$tag" 2>/dev/null || true)"
  if [ "$have" = "$version" ]; then
    echo "base image $tag exists"
    exit 0
  fi
  echo "base image $tag is older than this berth (version ${have:-1}, need $version): rebuilding"
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "installing debootstrap"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

root="$(mktemp -d /var/tmp/berth-rootfs.XXXXXX)"
trap 'as_root rm -rf "$root"' EXIT
echo "debootstrap $suite from $mirror into $root (about a minute)"
as_root debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -20 "$root.log"; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# A lean image: no package lists or caches; apt sources point at the mirror.
as_root rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
echo "deb $mirror $suite main" | as_root tee "$root/etc/apt/sources.list" >/dev/null
as_root tar -C "$root" -c . | docker import \
  -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/bash"]' \
  -c 'LABEL berth.image=base' \
  -c "LABEL berth.base.version=$version" \
  -m "berth base: debootstrap $suite" - "$tag" >/dev/null
echo "built $tag"
