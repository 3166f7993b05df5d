#!/usr/bin/env bash
# The main job, from a fresh machine: set the host up (packages, npm
# dependencies, build), build the Debian systemd rootfs once (cached), and
# boot it as PID 1 in a user namespace under runc, with oci-userns as the
# createRuntime/poststop hook giving it an ID-mapped rootfs and delegating
# the cgroup.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root: runc, mounts and chown need it" >&2; exit 1; }
scripts/setup-host.sh
exec node --import tsx scripts/demo.ts "$@"
