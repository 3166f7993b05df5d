// The runtime mounts the rootfs from inside the new user namespace, where
// container root is an unprivileged host uid: every directory on the way
// must let that uid search it, or runc fails with "error preparing rootfs:
// ... permission denied". Engines that allocate user namespaces open the
// way themselves (podman chowns the container's layer directory); for a
// container the shim gives one, the shim does it, as narrowly as it can.

import { chmodSync, lstatSync, realpathSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { errnoCode, RefusedError, systemError } from '../errors';
import type { Logger } from '../log/logger';
import { toContainer, type IdMapping } from '../oci/idmap';
import { readMounts, treeExposures, treeOf } from './tree';
import type { Mount } from '../sys/mountinfo';

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
 * changed. Returns the directories changed. Synchronous system calls, as
 * in readRawTreeAccess: on the shim's path the first asynchronous file
 * operation alone costs milliseconds.
 */
export async function openPathToRootfs(rootfs: string, who: Searcher, opts: { containerId?: string; logger?: Logger } = {}): Promise<string[]> {
  let real: string;
  try {
    real = realpathSync.native(rootfs);
  } catch (error) {
    throw systemError('cannot resolve the rootfs', rootfs, error, { containerId: opts.containerId });
  }
  const parent = dirname(real);
  const blocked: Array<{ dir: string; mode: number }> = [];
  for (const dir of pathAndAncestors(real)) {
    let st;
    try {
      st = statSync(dir);
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
      chmodSync(dir, mode | 0o001);
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

/** Owner and mode of a directory on the way to a tree (lstat). */
export interface DirFacts {
  uid: number;
  mode: number;
}

/** The first directory above `path` (from / down to its parent) that closedToOthers() accepts among `dirs`. Pure. */
export function firstClosed(path: string, dirs: ReadonlyMap<string, DirFacts>, rangeUids: IdMapping[]): string | undefined {
  return pathAndAncestors(dirname(path)).find((dir) => {
    const st = dirs.get(dir);
    return st !== undefined && closedToOthers(st, rangeUids);
  });
}

/** Whether the raw tree is closed to other host users: the directory closing the rootfs's own path, or the first place that shows it open. */
export type RawTreeAccess = { closedBy: string } | { openAt: string };

/**
 * The safety rule of an idmapped rootfs (README "ID-mapped rootfs"),
 * decided over facts. Through an idmapped mount, what container root
 * writes lands on disk as host root, so a setuid file made inside is a
 * host setuid-root file on the raw tree: every place the raw tree shows
 * (the rootfs path itself and every exposure, lib/rootfs/tree.ts
 * treeExposures: bind mounts, other mounts of its filesystem) needs a
 * directory above it closed to every host user but root and the range.
 * Pure; an exposure whose directories are missing from `dirs` is open.
 */
export function rawTreeAccess(rootfs: string, exposures: readonly string[], dirs: ReadonlyMap<string, DirFacts>, rangeUids: IdMapping[]): RawTreeAccess {
  const closedBy = firstClosed(rootfs, dirs, rangeUids);
  if (closedBy === undefined) return { openAt: rootfs };
  const open = exposures.find((path) => firstClosed(path, dirs, rangeUids) === undefined);
  return open === undefined ? { closedBy } : { openAt: open };
}

/**
 * Reads the facts of rawTreeAccess() for a real path `rootfs` and decides:
 * its tree's exposures from mountinfo (`mounts` as read already, else
 * `mountinfoPath`, default /proc/self/mountinfo), the owner and mode of
 * every directory above each.
 * A place that does not exist (hidden by a later mount) shows nothing.
 * Throws SystemError when mountinfo or a stat cannot be read.
 */
export async function readRawTreeAccess(rootfs: string, rangeUids: IdMapping[], opts: { containerId?: string; mountinfoPath?: string; mounts?: Mount[] } = {}): Promise<RawTreeAccess> {
  const mounts = opts.mounts ?? readMounts(opts.mountinfoPath);
  const tree = treeOf(mounts, rootfs);
  const dirs = new Map<string, DirFacts>();
  const statAll = (path: string) => {
    for (const dir of pathAndAncestors(dirname(path))) {
      if (dirs.has(dir)) continue;
      try {
        const st = statSync(dir);
        dirs.set(dir, { uid: st.uid, mode: st.mode });
      } catch (error) {
        throw systemError('cannot stat', dir, error, { containerId: opts.containerId });
      }
    }
  };
  statAll(rootfs);
  const exposures: string[] = [];
  for (const path of tree ? treeExposures(mounts, tree) : []) {
    if (path === rootfs) continue;
    try {
      lstatSync(path);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') continue;
      throw systemError('cannot stat', path, error, { containerId: opts.containerId });
    }
    statAll(path);
    exposures.push(path);
  }
  return rawTreeAccess(rootfs, exposures, dirs, rangeUids);
}
