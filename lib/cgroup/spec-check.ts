// Whether a container's spec lets systemd use a delegated cgroup: pure,
// from config.json alone, so the hook can refuse or warn before it
// changes anything (lib/cgroup/delegate.ts does the delegation itself).

import { normalize } from 'node:path';

/** The parts of a spec that decide whether systemd can use a delegated cgroup. */
export interface CgroupSpecView {
  mounts?: Array<{ destination: string; options?: string[] }>;
  linux?: { namespaces?: Array<{ type: string }> };
}

/**
 * Why a container's spec rules out cgroup delegation under the runtime
 * spec's rules (a new cgroup namespace, /sys/fs/cgroup mounted without ro);
 * empty when delegation applies. systemd cannot run without it, so the hook
 * warns, or refuses when cgroup.strict is set, for a systemd container.
 */
export function systemdSpecProblems(spec: CgroupSpecView): string[] {
  const problems: string[] = [];
  if (!(spec.linux?.namespaces ?? []).some((ns) => ns.type === 'cgroup')) problems.push('the container has no cgroup namespace');
  const mount = [...(spec.mounts ?? [])].reverse().find((m) => normalize(m.destination).replace(/(.)\/+$/, '$1') === '/sys/fs/cgroup');
  if (!mount) problems.push('nothing is mounted at /sys/fs/cgroup');
  else if ((mount.options ?? []).includes('ro')) problems.push('/sys/fs/cgroup is mounted read-only');
  return problems;
}
