#!/usr/bin/env bash
# Builds (once) a Debian bookworm rootfs with systemd and caches it as a
# tarball outside the repository, so only the first run pays for debootstrap.
# Prints the path of the tarball.
set -euo pipefail
cache="${OCI_USERNS_CACHE:-/var/cache/oci-userns-dev}"
tarball="$cache/debian-bookworm-systemd.tar"
if [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debian-rootfs: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libcap2-bin,acl bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1 || {
  echo "debian-rootfs: debootstrap failed; last lines of its log:" >&2
  tail -20 "$work/debootstrap.log" >&2
  exit 1
}
# A machine-id lets systemd boot without first-boot setup; an empty one is
# filled at boot from the container's uuid.
: > "$work/rootfs/etc/machine-id"
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb
tar -C "$work/rootfs" --xattrs --xattrs-include='*' --acls --numeric-owner -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$tarball"
echo "$tarball"
