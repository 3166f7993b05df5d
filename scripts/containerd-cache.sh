#!/usr/bin/env bash
# Fetches (once) containerd 1.7 for the CRI end-to-end tests: Debian trixie's
# package, downloaded with apt-get under a private source list and private
# apt state (nothing of the host's apt configuration or packages changes),
# unpacked with dpkg -x into a cache folder outside the repository. Prints
# the directory holding the containerd binaries.
#
# The mirror is the one the host's apt already uses for Debian (read from
# `apt-get indextargets`), or $OCI_USERNS_DEBIAN_MIRROR.
set -euo pipefail
cache="${OCI_USERNS_CACHE:-/var/cache/oci-userns-dev}/containerd"
suite="${OCI_USERNS_CONTAINERD_SUITE:-trixie}"
want="${OCI_USERNS_CONTAINERD_VERSION:-1.7.24}"
bin="$cache/root/usr/bin"

if [ -x "$bin/containerd" ] && "$bin/containerd" --version 2>/dev/null | grep -q " $want"; then
  echo "$bin"
  exit 0
fi
command -v apt-get >/dev/null && command -v dpkg >/dev/null || { echo "containerd-cache: needs apt-get and dpkg (a Debian or Ubuntu host)" >&2; exit 1; }

mirror="${OCI_USERNS_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(apt-get indextargets --format '$(REPO_URI) $(CODENAME)' 2>/dev/null | awk '$1 !~ /security/ && $2 !~ /-/ { print $1; exit }')
fi
[ -n "$mirror" ] || { echo "containerd-cache: no Debian mirror in the host's apt sources; set OCI_USERNS_DEBIAN_MIRROR" >&2; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || { echo "containerd-cache: $keyring is missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

mkdir -p "$cache/apt/lists/partial" "$cache/apt/archives/partial" "$cache/deb"
printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$mirror" "$suite" >"$cache/apt/sources.list"
: >"$cache/apt/status"
apt_opts=(
  -o "Dir::Etc::SourceList=$cache/apt/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$cache/apt/lists"
  -o "Dir::State::Status=$cache/apt/status"
  -o "Dir::Cache=$cache/apt"
  -o "Dir::Cache::Archives=$cache/apt/archives"
  -o "APT::Get::List-Cleanup=0"
  # The cache belongs to root; apt's _apt sandbox user could not write it.
  -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" -qq update >&2
version=$(apt-cache "${apt_opts[@]}" policy containerd | awk '/Candidate:/ { print $2 }')
case "$version" in
  "$want"*) ;;
  *) echo "containerd-cache: $suite offers containerd '$version', not $want; set OCI_USERNS_CONTAINERD_VERSION to accept it" >&2; exit 1 ;;
esac
(cd "$cache/deb" && apt-get "${apt_opts[@]}" -qq download "containerd=$version" >&2)
rm -rf "$cache/root.new"
dpkg -x "$cache/deb/containerd_${version//:/%3a}_"*.deb "$cache/root.new"
rm -rf "$cache/root"
mv "$cache/root.new" "$cache/root"
"$bin/containerd" --version >&2
echo "$bin"
