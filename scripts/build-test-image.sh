#!/usr/bin/env bash
# Builds the systemd test image (Debian forky) with debootstrap and imports it into podman.
# No registry is reachable from CI, so the image is made locally and cached: the tag is a
# hash of this script, so the image is rebuilt only when its recipe changes.
set -euo pipefail

suite="${WAGW_IMAGE_SUITE:-forky}"
mirror="${WAGW_IMAGE_MIRROR:-http://deb.debian.org/debian}"
name="${WAGW_IMAGE_NAME:-localhost/wagw-debian}"
recipe_hash=$(sha256sum "$0" | cut -c1-12)
tag="${suite}-${recipe_hash}"

if podman image exists "${name}:${tag}"; then
  echo "image ${name}:${tag} is cached"
  podman tag "${name}:${tag}" "${name}:${suite}"
  exit 0
fi

rootfs=$(mktemp -d /var/tmp/wagw-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

# bookworm's debootstrap knows no "forky"; testing/sid share one script.
script=/usr/share/debootstrap/scripts/sid
start=$(date +%s)
debootstrap --variant=minbase \
  --include=python3,python3-apt,systemd,systemd-sysv,dbus,iproute2,ca-certificates,procps \
  "$suite" "$rootfs" "$mirror" "$script"

# The mirror serves a frozen snapshot whose Release files have expired.
echo 'Acquire::Check-Valid-Until "false";' > "$rootfs/etc/apt/apt.conf.d/99no-check-valid-until"
# Units that make no sense in a container and slow down or break boot.
for unit in getty.target systemd-logind.service console-getty.service \
            systemd-firstboot.service systemd-remount-fs.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
rm -f "$rootfs"/var/cache/apt/archives/*.deb

tar -C "$rootfs" -c . | podman import --change 'CMD ["/lib/systemd/systemd"]' - "${name}:${tag}"
podman tag "${name}:${tag}" "${name}:${suite}"
echo "built ${name}:${tag} in $(( $(date +%s) - start )) s"
