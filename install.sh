#!/usr/bin/env bash
# Installs oci-userns into the engines' hook configuration: the program
# (the files of dist/ in PREFIX/lib/oci-userns, linked from PREFIX/bin),
# the runtime-shim alias, the hooks.d definitions pointing at the installed
# program, optional containers.conf and CRI-O drop-ins, and a default config
# file when there is none. Records what it wrote in a manifest so that
# --uninstall removes exactly that. Running it twice changes nothing.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: ./install.sh [options]          install (builds dist/ first if needed)
       ./install.sh --uninstall [--prefix DIR]   remove what an install wrote

  --prefix DIR        program in DIR/lib/oci-userns, linked from DIR/bin (default /usr/local)
  --hooks-dir DIR     hooks.d folder (default /usr/share/containers/oci/hooks.d, the only
                      one podman 4 and CRI-O read unless hooks_dir says otherwise)
  --config FILE       config file the hooks read (default /etc/containers/oci-userns.json);
                      a default one is written only if FILE does not exist
  --node PATH         node binary the program runs with (default: node on PATH)
  --containers-conf   add /etc/containers/containers.conf.d/50-oci-userns.conf
                      (podman, buildah: hooks_dir and the oci-userns runtime)
  --crio              add /etc/crio/crio.conf.d/50-oci-userns.conf
                      (CRI-O: hooks_dir and the oci-userns runtime handler)
  --containerd        add /etc/containerd/conf.d/50-oci-userns.toml (containerd's CRI:
                      the oci-userns runtime handler; config.toml must import it)
  --no-build          fail instead of building when dist/ is missing or outdated
  --uninstall         remove the files listed in PREFIX's install manifest
  DESTDIR=DIR         stage everything under DIR (packaging); paths inside files stay final
EOF
}

PREFIX=/usr/local
HOOKS_DIR=/usr/share/containers/oci/hooks.d
HOOKS_DIR_SET=""
CONFIG=/etc/containers/oci-userns.json
DEFAULT_CONFIG=/etc/containers/oci-userns.json
NODE=""
CONTAINERS_CONF=""
CRIO=""
CONTAINERD=""
BUILD=yes
ACTION=install

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "install.sh: $1 needs a value; see --help" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --hooks-dir) need_value "$@"; HOOKS_DIR=$2; HOOKS_DIR_SET=yes; shift 2 ;;
    --hooks-dir=*) HOOKS_DIR=${1#*=}; HOOKS_DIR_SET=yes; shift ;;
    --config) need_value "$@"; CONFIG=$2; shift 2 ;;
    --config=*) CONFIG=${1#*=}; shift ;;
    --node) need_value "$@"; NODE=$2; shift 2 ;;
    --node=*) NODE=${1#*=}; shift ;;
    --containers-conf) CONTAINERS_CONF=yes; shift ;;
    --crio) CRIO=yes; shift ;;
    --containerd) CONTAINERD=yes; shift ;;
    --no-build) BUILD=no; shift ;;
    --uninstall) ACTION=uninstall; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'; see --help" >&2; exit 2 ;;
  esac
done

for p in "$PREFIX" "$HOOKS_DIR" "$CONFIG"; do
  case "$p" in /*) ;; *) echo "install.sh: '$p' must be an absolute path" >&2; exit 2 ;; esac
done
PREFIX=${PREFIX%/}
HOOKS_DIR=${HOOKS_DIR%/}
DEST=${DESTDIR:-}
DEST=${DEST%/}
SRC=$(cd "$(dirname "$0")" && pwd)
PROGRAM=$PREFIX/bin/oci-userns
LIBDIR=$PREFIX/lib/oci-userns
MANIFEST=$PREFIX/share/oci-userns/install-manifest

say() { printf '  %-10s %s\n' "$1" "$2"; }
die() { echo "install.sh: $*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Manifest lines: "file<TAB>sha256<TAB>path", "link<TAB>target<TAB>path",
# "dir<TAB>-<TAB>path" (a directory this script created), and
# "option<TAB>name<TAB>value". Paths are final paths, without DESTDIR.
declare -A OLD_KIND=() OLD_DATA=() OLD_OPTION=()
OLD_PATHS=()
read_manifest() {
  [ -f "$DEST$MANIFEST" ] || return 1
  local kind data path
  while IFS=$'\t' read -r kind data path; do
    if [ "$kind" = option ]; then
      OLD_OPTION[$data]=$path
    else
      OLD_KIND[$path]=$kind
      OLD_DATA[$path]=$data
      OLD_PATHS+=("$path")
    fi
  done <"$DEST$MANIFEST"
}

uninstall() {
  read_manifest || die "nothing to uninstall: no manifest at $DEST$MANIFEST (was it installed with --prefix $PREFIX?)"
  if [ -n "$HOOKS_DIR_SET" ] && [ "${OLD_OPTION[hooks-dir]:-}" != "$HOOKS_DIR" ]; then
    die "the install under $PREFIX used --hooks-dir ${OLD_OPTION[hooks-dir]:-?}, not $HOOKS_DIR; run --uninstall with that (or without --hooks-dir)"
  fi
  echo "oci-userns: uninstalling what $DEST$MANIFEST lists"
  local path dirs=()
  for path in "${OLD_PATHS[@]}"; do
    case "${OLD_KIND[$path]}" in
      file)
        if [ ! -e "$DEST$path" ]; then say gone "$path"
        elif [ "$(sha "$DEST$path")" = "${OLD_DATA[$path]}" ]; then rm -f "$DEST$path"; say removed "$path"
        else say kept "$path (changed since install; remove it yourself if you want)"
        fi ;;
      link)
        if [ -L "$DEST$path" ] && [ "$(readlink "$DEST$path")" = "${OLD_DATA[$path]}" ]; then rm -f "$DEST$path"; say removed "$path"
        elif [ -e "$DEST$path" ] || [ -L "$DEST$path" ]; then say kept "$path (no longer our link)"
        else say gone "$path"
        fi ;;
      dir) dirs+=("$path") ;;
    esac
  done
  rm -f "$DEST$MANIFEST"
  say removed "$MANIFEST"
  remove_empty_dirs "${dirs[@]}"
  # The program's code cache (lib/sys/code-cache.ts) is made at run time, so no manifest lists it.
  if [ -d "$DEST/var/cache/oci-userns" ] && [ ! -L "$DEST/var/cache/oci-userns" ]; then
    rm -rf "$DEST/var/cache/oci-userns"
    say removed "/var/cache/oci-userns/"
  fi
}

# Deepest first, so a parent is tried after its children.
remove_empty_dirs() {
  local dir
  [ $# -gt 0 ] || return 0
  while IFS= read -r dir; do
    if [ -d "$DEST$dir" ] && rmdir "$DEST$dir" 2>/dev/null; then say removed "$dir/"
    elif [ -d "$DEST$dir" ]; then say kept "$dir/ (not empty)"
    fi
  done < <(printf '%s\n' "$@" | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-)
}

if [ "$ACTION" = uninstall ]; then
  uninstall
  exit 0
fi

# --- prerequisites ---------------------------------------------------------
missing=()
[ -n "$NODE" ] || NODE=$(command -v node || true)
if [ -z "$NODE" ]; then
  missing+=("node >= 20 (not on PATH; install Node.js 20+ or pass --node PATH)")
elif [ ! -x "$NODE" ]; then
  missing+=("node >= 20 ($NODE is not executable)")
else
  case "$NODE" in /*) ;; *) NODE=$(cd "$(dirname "$NODE")" && pwd)/$(basename "$NODE") ;; esac
  major=$("$NODE" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  [ "$major" -ge 20 ] || missing+=("node >= 20 ($NODE is $("$NODE" --version 2>/dev/null || echo 'unusable'))")
fi
for tool in sha256sum install awk sort; do
  command -v "$tool" >/dev/null || missing+=("$tool (coreutils)")
done

bundle=$SRC/dist/oci-userns.cjs
stale=""
if [ ! -f "$bundle" ]; then
  stale="dist/oci-userns.cjs is missing"
elif [ -n "$(find "$SRC/bin" "$SRC/lib" "$SRC/cli" "$SRC/hooks" "$SRC/schemas" "$SRC/scripts/build.mjs" "$SRC/package.json" "$SRC/package-lock.json" \
    -newer "$bundle" -type f ! -path '*/lib/oci/generated/*' ! -path "$SRC/hooks/*.json" -print -quit 2>/dev/null)" ]; then
  stale="dist/oci-userns.cjs is older than the sources"
fi
helper=$SRC/dist/oci-userns-idmap
if [ -z "$stale" ] && { [ ! -f "$helper" ] || [ "$SRC/native/idmap-mount.c" -nt "$helper" ]; }; then
  stale="dist/oci-userns-idmap is missing or older than native/idmap-mount.c"
fi
if [ -n "$stale" ]; then
  command -v make >/dev/null && command -v cc >/dev/null || missing+=("make and a C compiler (to build the idmap helper: $stale)")
  [ "$BUILD" = yes ] || die "$stale and --no-build was given; run 'npm ci && npm run build' first"
  command -v npm >/dev/null || missing+=("npm (to build: $stale)")
fi
command -v runc >/dev/null || command -v crun >/dev/null || echo "install.sh: warning: neither runc nor crun is on PATH; the hooks need one of them to run" >&2
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

if [ -n "$stale" ]; then
  echo "oci-userns: building ($stale)"
  (
    cd "$SRC"
    if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
      npm ci --no-audit --no-fund
    fi
    npm run build --silent
  )
fi
head -n1 "$bundle" | grep -q '^#!' || die "$bundle does not start with a #! line; rebuild it with 'npm run build'"

# --- install ---------------------------------------------------------------
read_manifest || true
NEW=()
declare -A NEW_HAS=()
record() { NEW+=("$1"$'\t'"$2"$'\t'"$3"); NEW_HAS[$3]=1; }

# Creates DIR and its missing parents, recording each one it created, and
# keeps the directories an earlier install created on record.
ensure_dir() {
  local dir=$1 parts=() d
  while [ -n "$dir" ] && [ "$dir" != / ]; do parts=("$dir" "${parts[@]}"); dir=$(dirname "$dir"); done
  for d in "${parts[@]}"; do
    if [ ! -d "$DEST$d" ]; then
      mkdir -m 0755 "$DEST$d"
      [ -n "${NEW_HAS[$d]:-}" ] || record dir - "$d"
    elif [ "${OLD_KIND[$d]:-}" = dir ] && [ -z "${NEW_HAS[$d]:-}" ]; then
      record dir - "$d"
    fi
  done
}

# put STAGED PATH MODE: installs a file atomically unless it is already identical.
put() {
  local staged=$1 path=$2 mode=$3 sum
  ensure_dir "$(dirname "$path")"
  sum=$(sha "$staged")
  if [ -f "$DEST$path" ] && [ ! -L "$DEST$path" ] && [ "$(sha "$DEST$path")" = "$sum" ]; then
    chmod "$mode" "$DEST$path"
    say unchanged "$path"
  else
    local verb=installed
    [ -e "$DEST$path" ] && verb=updated
    install -m "$mode" "$staged" "$DEST$path.oci-userns-new"
    mv -f "$DEST$path.oci-userns-new" "$DEST$path"
    say "$verb" "$path"
  fi
  record file "$sum" "$path"
}

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
echo "oci-userns: installing into ${DEST:-/} (prefix $PREFIX, hooks $HOOKS_DIR, node $NODE)"

# The program is the files of dist/ (the executable, the files it loads
# when needed, their source maps), kept together in LIBDIR, and PROGRAM a
# link to the executable. The hooks run with only the env of their hooks.d
# definition (runc passes nothing else), so "#!/usr/bin/env node" could not
# find node there: the installed executable names its node by absolute path.
for file in "$SRC"/dist/*; do
  name=$(basename "$file")
  # The C helper goes to libexec (below), executable.
  [ "$name" != oci-userns-idmap ] || continue
  if [ "$name" = oci-userns.cjs ]; then
    { printf '#!%s\n' "$NODE"; tail -n +2 "$file"; } >"$STAGE/$name"
    put "$STAGE/$name" "$LIBDIR/$name" 0755
  else
    put "$file" "$LIBDIR/$name" 0644
  fi
done
# link TARGET PATH: installs a symlink unless it is already there.
link() {
  local target=$1 path=$2
  ensure_dir "$(dirname "$path")"
  if [ -L "$DEST$path" ] && [ "$(readlink "$DEST$path")" = "$target" ]; then
    say unchanged "$path -> $target"
  else
    [ ! -e "$DEST$path" ] || [ -L "$DEST$path" ] || [ -n "${OLD_KIND[$path]:-}" ] || die "$DEST$path exists and is not ours; move it away first"
    ln -sfn "$target" "$DEST$path.oci-userns-new"
    mv -fT "$DEST$path.oci-userns-new" "$DEST$path"
    say installed "$path -> $target"
  fi
  record link "$target" "$path"
}
link "../lib/oci-userns/oci-userns.cjs" "$PROGRAM"

# The helper for ID-mapped mounts is found from the program's path (lib/rootfs/idmap-mount.ts).
put "$helper" "$PREFIX/libexec/oci-userns/oci-userns-idmap" 0755

config_env=""
[ "$CONFIG" = "$DEFAULT_CONFIG" ] || config_env=$CONFIG

# The runtime shim's front (bin/oci-userns-runtime) execs the real runtime
# for every call that needs nothing from the shim and hands the rest to the
# program beside it. Engines start a runtime with an environment of their
# own (conmon passes not even PATH to `delete`), so a non-default config is
# written into the front, which passes it on to the program.
runtime=$PREFIX/bin/oci-userns-runtime
ensure_dir "$PREFIX/bin"
[ ! -e "$DEST$runtime" ] || [ -n "${OLD_KIND[$runtime]:-}" ] || die "$DEST$runtime exists and is not ours; move it away first"
quoted=${CONFIG//\'/\'\\\'\'}
LINE="default_config='$quoted'" awk '/^default_config=/ { print ENVIRON["LINE"]; next } { print }' \
  "$SRC/bin/oci-userns-runtime" >"$STAGE/oci-userns-runtime"
put "$STAGE/oci-userns-runtime" "$runtime" 0755

for template in "$SRC"/hooks/*.json; do
  name=$(basename "$template")
  "$NODE" -e '
    const [template, program, config] = process.argv.slice(1);
    const def = JSON.parse(require("fs").readFileSync(template, "utf8"));
    def.hook.path = program;
    if (config) def.hook.env = [...(def.hook.env ?? []), `OCI_USERNS_CONFIG=${config}`];
    process.stdout.write(JSON.stringify(def, null, 2) + "\n");
  ' "$template" "$PROGRAM" "$config_env" >"$STAGE/$name"
  put "$STAGE/$name" "$HOOKS_DIR/$name" 0644
done

# Engines fail or warn on a hooks_dir that does not exist, so the drop-ins
# list the standard folders only when they exist, plus ours.
hooks_dirs_toml() {
  local dirs=() d out=""
  for d in /usr/share/containers/oci/hooks.d /etc/containers/oci/hooks.d; do
    [ -d "$DEST$d" ] && [ "$d" != "$HOOKS_DIR" ] && dirs+=("$d")
  done
  dirs+=("$HOOKS_DIR")
  for d in "${dirs[@]}"; do out+="${out:+, }\"$d\""; done
  printf '[%s]' "$out"
}

if [ -n "$CONTAINERS_CONF" ]; then
  cat >"$STAGE/containers.conf" <<EOF
# Written by oci-userns install.sh; install.sh --uninstall removes it.
# Later folders win when two hold a file of the same name.
[engine]
hooks_dir = $(hooks_dirs_toml)

# podman --runtime oci-userns: the runtime shim, for containers that do not
# ask for a user namespace themselves.
[engine.runtimes]
oci-userns = ["$runtime"]
EOF
  put "$STAGE/containers.conf" /etc/containers/containers.conf.d/50-oci-userns.conf 0644
fi

if [ -n "$CRIO" ]; then
  cat >"$STAGE/crio.conf" <<EOF
# Written by oci-userns install.sh; install.sh --uninstall removes it.
[crio.runtime]
hooks_dir = $(hooks_dirs_toml)

# A RuntimeClass with handler "oci-userns" runs pods through the runtime shim.
[crio.runtime.runtimes.oci-userns]
runtime_path = "$runtime"
runtime_type = "oci"
# Only CRI-O's own annotation names are accepted here (another name makes
# crio refuse to start, or drop the handler); io.oci-userns.* pod
# annotations reach the containers' specs without being listed.
allowed_annotations = ["io.kubernetes.cri-o.userns-mode"]
EOF
  put "$STAGE/crio.conf" /etc/crio/crio.conf.d/50-oci-userns.conf 0644
fi

if [ -n "$CONTAINERD" ]; then
  cat >"$STAGE/containerd.toml" <<EOF
# Written by oci-userns install.sh; install.sh --uninstall removes it.
# containerd reads it when /etc/containerd/config.toml (version 2) has
#   imports = ["/etc/containerd/conf.d/*.toml"]
version = 2

# A RuntimeClass with handler "oci-userns" runs pods through the runtime
# shim, behind containerd's runc shim; io.oci-userns.* pod annotations
# reach the containers' specs.
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.oci-userns]
  runtime_type = "io.containerd.runc.v2"
  pod_annotations = ["io.oci-userns.*"]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.oci-userns.options]
    BinaryName = "$runtime"
EOF
  put "$STAGE/containerd.toml" /etc/containerd/conf.d/50-oci-userns.toml 0644
  if ! grep -qs '^[[:space:]]*imports[[:space:]]*=.*conf\.d' "$DEST/etc/containerd/config.toml"; then
    echo "oci-userns: add imports = [\"/etc/containerd/conf.d/*.toml\"] to /etc/containerd/config.toml, then restart containerd" >&2
  fi
fi

# The admin's config file is never touched; one an earlier install wrote
# and nobody edited stays on record, so --uninstall still removes it.
if [ ! -e "$DEST$CONFIG" ]; then
  cat >"$STAGE/config.json" <<'EOF'
{
  "$schema": "https://github.com/oci-userns/oci-userns/schemas/config-file.schema.json",
  "logFile": "/var/log/oci-userns/oci-userns.log",
  "logLevel": "info",
  "stateDir": "/var/lib/oci-userns",
  "pool": { "user": "containers", "subuidFile": "/etc/subuid", "subgidFile": "/etc/subgid", "blockSize": 65536 },
  "shift": { "method": "auto", "mode": "auto", "unmapped": "error" },
  "overlap": "refuse"
}
EOF
  put "$STAGE/config.json" "$CONFIG" 0644
elif [ "${OLD_KIND[$CONFIG]:-}" = file ] && [ "$(sha "$DEST$CONFIG")" = "${OLD_DATA[$CONFIG]}" ]; then
  ensure_dir "$(dirname "$CONFIG")"
  say unchanged "$CONFIG"
  record file "${OLD_DATA[$CONFIG]}" "$CONFIG"
else
  say kept "$CONFIG (existing config, not overwritten)"
fi

ensure_dir "$(dirname "$MANIFEST")"

# What an earlier install wrote and this one did not: remove it, unless
# someone changed it since.
stale_dirs=()
for path in "${OLD_PATHS[@]}"; do
  [ -z "${NEW_HAS[$path]:-}" ] || continue
  case "${OLD_KIND[$path]}" in
    file)
      if [ -f "$DEST$path" ] && [ "$(sha "$DEST$path")" = "${OLD_DATA[$path]}" ]; then rm -f "$DEST$path"; say removed "$path (no longer installed)"
      elif [ -e "$DEST$path" ]; then say kept "$path (changed since install)"
      fi ;;
    link)
      if [ -L "$DEST$path" ] && [ "$(readlink "$DEST$path")" = "${OLD_DATA[$path]}" ]; then rm -f "$DEST$path"; say removed "$path (no longer installed)"; fi ;;
    dir) stale_dirs+=("$path") ;;
  esac
done
remove_empty_dirs "${stale_dirs[@]}"
for dir in "${stale_dirs[@]}"; do
  [ ! -d "$DEST$dir" ] || record dir - "$dir"
done

{
  printf 'option\tprefix\t%s\n' "$PREFIX"
  printf 'option\thooks-dir\t%s\n' "$HOOKS_DIR"
  printf 'option\tconfig\t%s\n' "$CONFIG"
  printf 'option\tnode\t%s\n' "$NODE"
  printf '%s\n' "${NEW[@]}"
} >"$STAGE/manifest"
if [ -f "$DEST$MANIFEST" ] && cmp -s "$STAGE/manifest" "$DEST$MANIFEST"; then
  say unchanged "$MANIFEST"
else
  install -m 0644 "$STAGE/manifest" "$DEST$MANIFEST"
  say wrote "$MANIFEST"
fi

if [ "$HOOKS_DIR" = /usr/share/containers/oci/hooks.d ]; then
  echo "oci-userns: done; podman and CRI-O read $HOOKS_DIR by default."
elif [ -n "$CONTAINERS_CONF$CRIO$CONTAINERD" ]; then
  echo "oci-userns: done; the drop-ins name $HOOKS_DIR in hooks_dir (engines read only the folders listed there, or their default /usr/share/containers/oci/hooks.d)."
else
  echo "oci-userns: done; engines read $HOOKS_DIR only when told: podman --hooks-dir, or hooks_dir in containers.conf / crio.conf (--containers-conf, --crio)."
fi
echo "oci-userns: check the host with: $PROGRAM doctor --hooks-dir $HOOKS_DIR"
echo "oci-userns: remove with: $0 --uninstall --prefix $PREFIX"
