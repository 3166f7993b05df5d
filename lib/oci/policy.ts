// Decisions about a container from its spec alone (no I/O): is it a
// systemd container, and does the runtime shim give it a user namespace?
// The annotations under io.oci-userns. are the channel between engines,
// the shim and the hook.

import type { ShimPolicy } from '../config/config';
import { InputError } from '../errors';
import { hasUserNamespace, type Spec } from './spec';

export const ANNOTATION_PREFIX = 'io.oci-userns.';
/** "true" marks a container as running systemd whatever its command is. */
export const SYSTEMD_ANNOTATION = 'io.oci-userns.systemd';
/** "auto" asks the shim for a user namespace whatever the policy; "off" opts out. */
export const USERNS_ANNOTATION = 'io.oci-userns.userns';
/** The hook's opt-out: "false" stops the shim too, since the hook would not shift for it. */
export const HOOK_ENABLE_ANNOTATION = 'io.oci-userns.enable';
/** Set by the shim on a spec it gave a user namespace: the range came from the shim's allocation. */
export const SOURCE_ANNOTATION = 'io.oci-userns.source';

/** process.args[0] is init or systemd (as hooks.d's `commands` match them), or the annotation says so. */
export function isSystemdContainer(spec: Spec): boolean {
  const annotation = spec.annotations?.[SYSTEMD_ANNOTATION];
  if (annotation !== undefined) return annotation === 'true';
  const command = spec.process?.args?.[0] ?? '';
  return /(^|\/)(init|systemd)$/.test(command);
}

export interface ShimVerdict {
  /** The shim allocates a range and gives the container a user namespace. */
  act: boolean;
  /**
   * The engine gave the user namespace (containerd 1.7 for a kubelet pod
   * with hostUsers: false) and the container is systemd: the shim adds
   * what systemd needs there (hooks, cgroup namespace, writable cgroup,
   * tmpfs /run), without allocating.
   */
  complete: boolean;
  systemd: boolean;
  /** Why, for the log. */
  reason: string;
}

/**
 * Whether the shim gives this container a user namespace. A spec with one
 * already keeps it (the engine chose its mappings; the hooks guard them),
 * and is completed when it is a systemd container that did not opt out;
 * then the annotations decide; then the configured policy:
 * 'systemd' (systemd containers), 'always', or 'annotation' (only on request).
 */
export function shimVerdict(spec: Spec, policy: ShimPolicy, containerId?: string): ShimVerdict {
  const systemd = isSystemdContainer(spec);
  const verdict = (act: boolean, reason: string, complete = false): ShimVerdict => ({ act, complete, systemd, reason });
  const asked = spec.annotations?.[USERNS_ANNOTATION];
  if (hasUserNamespace(spec)) {
    const optedOut = asked === 'off' || spec.annotations?.[HOOK_ENABLE_ANNOTATION] === 'false';
    return verdict(false, 'the spec has a user namespace already', systemd && !optedOut);
  }
  if (asked !== undefined && asked !== 'auto' && asked !== 'off') {
    throw new InputError(`annotation ${USERNS_ANNOTATION} is '${asked}'`, { containerId, hint: "use 'auto' to ask for a user namespace or 'off' to opt out" });
  }
  if (asked === 'off') return verdict(false, `${USERNS_ANNOTATION}=off`);
  if (spec.annotations?.[HOOK_ENABLE_ANNOTATION] === 'false') return verdict(false, `${HOOK_ENABLE_ANNOTATION}=false`);
  if (asked === 'auto') return verdict(true, `${USERNS_ANNOTATION}=auto`);
  switch (policy) {
    case 'always':
      return verdict(true, 'policy always');
    case 'systemd':
      return verdict(systemd, systemd ? 'policy systemd: a systemd container' : 'policy systemd: not a systemd container');
    case 'annotation':
      return verdict(false, `policy annotation: no ${USERNS_ANNOTATION}=auto`);
  }
}

/** Names the block a container prefers (so it gets the same range, and its shifted rootfs fits, when it comes back). */
export const NAME_ANNOTATION = 'io.oci-userns.name';

/**
 * What the shim asks the allocator for: the name the preferred block
 * derives from, and a size when the spec names ids beyond one block
 * (process.user, additionalGids), so they are mapped.
 */
export function requestedRange(spec: Spec, blockSize: number): { name?: string; size?: number } {
  const user = spec.process?.user;
  const additional = Array.isArray(user?.additionalGids) ? (user.additionalGids as unknown[]).filter((g): g is number => typeof g === 'number') : [];
  const highest = Math.max(0, user?.uid ?? 0, user?.gid ?? 0, ...additional);
  const name = spec.annotations?.[NAME_ANNOTATION];
  return { ...(name ? { name } : {}), ...(highest >= blockSize ? { size: highest + 1 } : {}) };
}
