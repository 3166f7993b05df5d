// Decisions about a container from its spec alone (no I/O): is it a
// systemd container? The annotations under io.oci-userns. are the channel
// between engines, the shim and the hook.

import type { Spec } from './spec';

export const ANNOTATION_PREFIX = 'io.oci-userns.';
/** "true" marks a container as running systemd whatever its command is. */
export const SYSTEMD_ANNOTATION = 'io.oci-userns.systemd';

/** process.args[0] is init or systemd (as hooks.d's `commands` match them), or the annotation says so. */
export function isSystemdContainer(spec: Spec): boolean {
  const annotation = spec.annotations?.[SYSTEMD_ANNOTATION];
  if (annotation !== undefined) return annotation === 'true';
  const command = spec.process?.args?.[0] ?? '';
  return /(^|\/)(init|systemd)$/.test(command);
}
