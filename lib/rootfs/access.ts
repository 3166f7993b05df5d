// The runtime mounts the rootfs from inside the new user namespace, where
// container root is an unprivileged host uid: every directory on the way
// must let that uid search it, or runc fails with "error preparing rootfs:
// ... permission denied". Engines that allocate user namespaces open the
// way themselves (podman chowns the container's layer directory); for a
// container the shim gives one, the shim does it, as narrowly as it can.

import { promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import { RefusedError, systemError } from '../errors';
import type { Logger } from '../log/logger';
import { toContainer, type IdMapping } from '../oci/idmap';

export interface Searcher {
  uid: number;
  gid: number;
}

/** Whether `who` may search a directory with this owner and mode (no ACLs: runtimes' directories have none). */
export function maySearch(st: { uid: number; gid: number; mode: number }, who: Searcher): boolean {
  if (st.uid === who.uid) return (st.mode & 0o100) !== 0;
  if (st.gid === who.gid) return (st.mode & 0o010) !== 0;
  return (st.mode & 0o001) !== 0;
}

/** `/`, `/a`, `/a/b` ... down to `path` itself. */
export function pathAndAncestors(path: string): string[] {
  const out: string[] = [];
  for (let p = path; ; p = dirname(p)) {
    out.unshift(p);
    if (dirname(p) === p) return out;
  }
}

/**
 * Makes the rootfs reachable for container root (host ids `who`): adds
 * search permission for others (o+x, no read) to the rootfs's parent
 * directory, the one engines create per container (podman's layer
 * directory, runc's bundle), when it lacks it. Any other directory on the
 * way that blocks is the admin's to open: RefusedError naming it, nothing
 * changed. Returns the directories changed.
 */
export async function openPathToRootfs(rootfs: string, who: Searcher, opts: { containerId?: string; logger?: Logger } = {}): Promise<string[]> {
  let real: string;
  try {
    real = await fs.realpath(rootfs);
  } catch (error) {
    throw systemError('cannot resolve the rootfs', rootfs, error, { containerId: opts.containerId });
  }
  const parent = dirname(real);
  const blocked: Array<{ dir: string; mode: number }> = [];
  for (const dir of pathAndAncestors(real)) {
    let st;
    try {
      st = await fs.stat(dir);
    } catch (error) {
      throw systemError('cannot stat', dir, error, { containerId: opts.containerId });
    }
    if (!maySearch(st, who)) blocked.push({ dir, mode: st.mode & 0o7777 });
  }
  const others = blocked.filter((b) => b.dir !== parent);
  if (others.length > 0) {
    const dirs = others.map((b) => b.dir);
    throw new RefusedError(`container root (host uid ${who.uid}) cannot reach the rootfs ${real}: ${dirs.join(', ')} ${dirs.length === 1 ? 'does' : 'do'} not let it search`, {
      containerId: opts.containerId,
      path: dirs[0],
      hint: `let others search ${dirs.length === 1 ? 'it' : 'them'} (chmod o+x ${dirs.join(' ')}), or put the bundle where container root can reach it`,
    });
  }
  const changed: string[] = [];
  for (const { dir, mode } of blocked) {
    try {
      await fs.chmod(dir, mode | 0o001);
    } catch (error) {
      throw systemError('cannot let container root search', dir, error, { containerId: opts.containerId });
    }
    opts.logger?.info(`let others search ${dir} so container root (host uid ${who.uid}) can reach the rootfs`, { containerId: opts.containerId, path: dir, mode: (mode | 0o001).toString(8) });
    changed.push(dir);
  }
  return changed;
}

/**
 * Whether a directory keeps out every host user but root and the
 * container's range: owned by root or a host uid of the range, with no
 * search permission for its group or others. Under POSIX ACLs the group bits
 * are the ACL mask, which bounds every named entry (acl(5)), so no ACL can
 * let anyone else through either.
 */
export function closedToOthers(st: { uid: number; mode: number }, rangeUids: IdMapping[]): boolean {
  return (st.mode & 0o011) === 0 && (st.uid === 0 || toContainer(rangeUids, st.uid) !== undefined);
}

/**
 * The first directory above the rootfs (from / down to its parent) that
 * closedToOthers() accepts, or undefined when every host user can reach the
 * rootfs. `rootfs` is a real path. Why it matters: through an idmapped
 * mount, what container root writes lands on disk as host root, so a setuid
 * file made inside is a host setuid-root file on the raw tree. Throws
 * SystemError when a stat fails.
 */
export async function closedAncestor(rootfs: string, rangeUids: IdMapping[], opts: { containerId?: string } = {}): Promise<string | undefined> {
  for (const dir of pathAndAncestors(dirname(rootfs))) {
    let st;
    try {
      st = await fs.stat(dir);
    } catch (error) {
      throw systemError('cannot stat', dir, error, { containerId: opts.containerId });
    }
    if (closedToOthers(st, rangeUids)) return dir;
  }
  return undefined;
}
