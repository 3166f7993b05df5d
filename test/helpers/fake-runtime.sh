#!/bin/sh
# A fake OCI runtime for the shim's unit tests: records what it was handed
# under $FAKE_RUNTIME_RECORD (argv NUL-separated, the bundle's config.json,
# `ls -l` of its descriptors) and exits with $FAKE_RUNTIME_EXIT; `--version`
# prints $FAKE_RUNTIME_VERSION when set, counting calls in $rec.versions.
rec="$FAKE_RUNTIME_RECORD"
if [ "$1" = --version ] && [ -n "$FAKE_RUNTIME_VERSION" ]; then
  echo x >> "$rec.versions"
  echo "$FAKE_RUNTIME_VERSION"
  exit 0
fi
printf '%s\0' "$@" > "$rec.argv"
bundle=.
prev=
for a in "$@"; do
  case "$prev" in --bundle|-bundle|-b) bundle="$a" ;; esac
  case "$a" in --bundle=*) bundle="${a#--bundle=}" ;; esac
  prev="$a"
done
if [ -f "$bundle/config.json" ]; then cp "$bundle/config.json" "$rec.config.json"; fi
# One child listing the shell's descriptors: a command substitution would add a pipe of its own.
ls -l "/proc/$$/fd" > "$rec.fds"
exit "${FAKE_RUNTIME_EXIT:-0}"
