#!/usr/bin/env bash
# Prepares a Debian/Ubuntu host for building and testing oci-userns: the
# runtimes and tools the end-to-end tests use, then the npm dependencies.
# Installs only what is missing, so a second run costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(make gcc libc6-dev runc crun podman uidmap acl attr libcap2-bin debootstrap systemd-container busybox-static util-linux time containernetworking-plugins)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v node >/dev/null || { echo "setup-host: Node.js >= 20 is required" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || { echo "setup-host: Node.js >= 20 is required, found $(node --version)" >&2; exit 1; }
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
# containerd 1.7 for the CRI tests, cached outside the repository (never installed system-wide).
scripts/containerd-cache.sh >/dev/null
