// The hook's idmap route for a directory rootfs: at createRuntime the
// container's mount namespace holds the rootfs, bind-mounted onto its own
// path with the spec's mounts below it, and pivot_root has not happened yet
// (runc 1.1 and crun 1.8 both; runtime-spec config.md "createRuntime").
// Putting an idmapped clone of that tree over the same path, in that
// namespace, with the container's user namespace, makes `/` show the image's
// owners inside while nothing on disk changes.

import { existsSync, promises as fs } from 'node:fs';
import { containerProcessGone, errnoCode, systemError, SystemError } from '../errors';
import { stopwatch } from '../log/stopwatch';
import { parseMountinfo, visibleMounts } from '../sys/mountinfo';
import { idmapMount, type IdmapTimings } from './idmap-mount';

export interface IdmapRootfsOptions {
  /** The container's process (state.pid at createRuntime). */
  pid: number;
  /** The rootfs path from the spec, resolved against the bundle (lib/oci/spec rootfsPath). */
  rootfs: string;
  containerId: string;
  /** The helper; found from the program's path when absent. */
  helper?: string;
  /** Where /proc is; tests point it elsewhere. */
  procRoot?: string;
}

/**
 * 'idmapped': done, `ms` is the whole call (helper start included),
 * `timings` the helper's system calls. 'already-idmapped': the runtime or
 * engine idmapped the rootfs itself (crun with an idmap option, podman
 * --rootfs DIR:idmap); nothing to do, and no chown either. 'unsupported':
 * the kernel, the filesystem or the install refused, nothing changed; the
 * caller falls back to chown (auto) or refuses (idmap).
 */
export type IdmapRootfsResult =
  | { action: 'idmapped'; rootfs: string; ms: number; timings: IdmapTimings }
  | { action: 'already-idmapped'; rootfs: string }
  | { action: 'unsupported'; rootfs: string; reason: string };

/**
 * Gives the container an idmapped `/`: the helper enters
 * /proc/PID/ns/mnt and clones the rootfs mount tree with the mappings of
 * /proc/PID/ns/user over the rootfs's real path (crun mounts the symlink's
 * target; runc refuses a symlinked rootfs). Throws HostError when the
 * process exited meanwhile (errors.ts containerProcessGone), InputError or
 * SystemError from the helper.
 */
export async function idmapRootfs(opts: IdmapRootfsOptions): Promise<IdmapRootfsResult> {
  const elapsed = stopwatch();
  const procRoot = opts.procRoot ?? '/proc';
  const { containerId } = opts;
  let rootfs: string;
  try {
    rootfs = await fs.realpath(opts.rootfs);
  } catch (error) {
    throw systemError('cannot resolve the rootfs', opts.rootfs, error, { containerId });
  }
  const mountinfoPath = `${procRoot}/${opts.pid}/mountinfo`;
  let mountinfo: string;
  try {
    mountinfo = await fs.readFile(mountinfoPath, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw containerProcessGone(opts.pid, containerId, error);
    throw systemError('cannot read', mountinfoPath, error, { containerId });
  }
  // The kernel refuses to idmap an idmapped mount (EPERM), which would read as "unsupported" and lead to a chown.
  const atRootfs = visibleMounts(parseMountinfo(mountinfo)).find((mount) => mount.mountPoint === rootfs);
  if (atRootfs?.mountOptions.includes('idmapped')) return { action: 'already-idmapped', rootfs };

  let outcome;
  try {
    outcome = await idmapMount({ helper: opts.helper, source: rootfs, usernsFile: `${procRoot}/${opts.pid}/ns/user`, mntnsFile: `${procRoot}/${opts.pid}/ns/mnt`, containerId });
  } catch (error) {
    // The process may exit between the mountinfo read and the helper's open of its namespaces.
    if (error instanceof SystemError && !existsSync(`${procRoot}/${opts.pid}`)) throw containerProcessGone(opts.pid, containerId, error);
    throw error;
  }
  if (outcome.outcome === 'unsupported') return { action: 'unsupported', rootfs, reason: outcome.reason };
  return { action: 'idmapped', rootfs, ms: Math.round(elapsed() * 100) / 100, timings: outcome.timings };
}
