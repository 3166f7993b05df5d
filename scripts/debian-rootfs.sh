#!/usr/bin/env bash
# Builds (once) a Debian bookworm rootfs with systemd and caches it as a
# tarball outside the repository, so only the first run pays for debootstrap.
# Prints the path of the tarball. The tarball's name carries a hash of the
# package list, so a changed list builds a new cache instead of reusing one
# that lacks a package (and worktrees with another list keep theirs).
# iputils-ping (cap_net_raw file capability) and sudo (setuid root) are there
# for the ID-mapped rootfs tests: privilege through an idmapped mount.
set -euo pipefail
packages="systemd,systemd-sysv,dbus,libcap2-bin,acl,iputils-ping,sudo"
cache="${OCI_USERNS_CACHE:-/var/cache/oci-userns-dev}"
key=$(printf 'bookworm minbase %s' "$packages" | sha256sum | cut -c1-12)
tarball="$cache/debian-bookworm-systemd-$key.tar"
if [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debian-rootfs: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include="$packages" bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1 || {
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
