// The shim's ID-mapped rootfs. The shim runs before the runtime, in the
// engine's mount namespace, and the runtime then creates mount points in
// the rootfs (/etc/hosts, /var/log/journal) from inside the user namespace,
// before any hook: so container root must own the rootfs already when the
// runtime starts. Two ways to give it that in O(1), chowning nothing:
//   - a directory rootfs: an idmapped clone of it, attached at a private
//     mount point, STATEDIR/rootfs/ID/root, whose parent is 0700 and owned by
//     the range's host root (the safety rule, README "ID-mapped rootfs"); the
//     spec's root.path points there. Files container root writes land on
//     the raw tree as host root, so the raw tree must itself be closed to
//     every host user but root (podman storage, containerd's state dirs
//     are; a bundle in a world-searchable directory is not: chown then).
//     Mounts on the way (podman --rootfs ...:idmap) are not idmapped twice.
//   - an overlay rootfs (containerd's snapshotter, podman storage): rebuilt
//     over idmapped lower layers with an upper owned by the range
//     (lib/rootfs/overlay.ts); what container root writes lands in the
//     upper as the range's ids, so no raw path holds host-root files of its
//     making. The engine unmounts it at delete as it would its own.
// Anything else, or any refusal, leaves the rootfs as it was for the chown
// shift, with the reason.

import { lstatSync, promises as fs, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, systemError } from '../errors';
import type { Logger } from '../log/logger';
import { stopwatch } from '../log/stopwatch';
import { toHost, type IdMapping } from '../oci/idmap';
import { readStateFast } from '../shift/state';
import { parseMountinfo, visibleMounts, type Mount } from '../sys/mountinfo';
import { readRawTreeAccess } from './access';
import { idmapMount } from './idmap-mount';
import { mappingUserns } from './mapping-userns';
import { mountTool } from './mount-tool';
import { idmapOverlay, overlayLayout, type OverlayLayout } from './overlay';

export interface ShimRootfsOptions {
  /** The rootfs path from the spec, resolved against the bundle. */
  rootfs: string;
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  stateDir: string;
  containerId: string;
  logger?: Logger;
  helper?: string;
  /** The mountinfo to read; /proc/self/mountinfo by default (tests). */
  mountinfoPath?: string;
}

/**
 * 'directory': the spec's root.path must become `rootPath`. 'overlay': the
 * overlay at the rootfs was rebuilt in place. 'chown': nothing changed,
 * `reason` says why; the caller shifts with chown (or refuses under
 * shift.method idmap).
 */
export type ShimRootfs =
  | { route: 'directory'; rootPath: string; ms: number }
  | { route: 'overlay'; lowers: number; ms: number }
  | { route: 'chown'; reason: string };

/** STATEDIR/rootfs/ID: the container's private directory (its parent, 0711 root, lets container root pass). */
export const privateDir = (stateDir: string, containerId: string) => join(stateDir, 'rootfs', containerId);

/** What decides the route, read from the host. */
export interface ShimRootfsFacts {
  /** The mount exactly at the rootfs's real path, if any. */
  mountAt?: Mount;
  rootOwner: { uid: number; gid: number };
  /** A shift state is recorded for this path (the chown engine owns it: a shifted or half-shifted tree). */
  shiftRecorded: boolean;
  /** A directory above the raw tree closed to every host user but root, at every place the tree shows (lib/rootfs/access.ts rawTreeAccess). */
  rawClosedBy?: string;
  /** Else where a host user can reach the raw tree: the rootfs path or another mount of it. */
  rawOpenAt?: string;
  /** For an overlay: its upper directory's owner and whether it is empty, and its lower layers' roots' owners. */
  upper?: { uid: number; gid: number; empty: boolean };
  lowerOwners?: Array<{ uid: number; gid: number }>;
}

export type ShimRoute = { route: 'directory' } | { route: 'overlay'; layout: OverlayLayout } | { route: 'chown'; reason: string };

/**
 * The route for a rootfs, given the facts. Pure. Only a tree owned by host
 * root and never shifted is idmapped: the mount maps its on-disk ids
 * through the container's mapping, so a tree in another range would land
 * outside the container's.
 */
export function shimRoute(facts: ShimRootfsFacts, range: { uid: number; gid: number }): ShimRoute {
  if (facts.shiftRecorded) return { route: 'chown', reason: 'the chown engine has a recorded state for this rootfs' };
  const overlay = facts.mountAt?.fsType === 'overlay' ? overlayLayout(facts.mountAt) : undefined;
  if (overlay !== undefined) {
    if ('unsupported' in overlay) return { route: 'chown', reason: overlay.unsupported };
    const upper = facts.upper!;
    const fresh = upper.empty && upper.uid === 0 && upper.gid === 0;
    const ours = upper.uid === range.uid && upper.gid === range.gid;
    if (!fresh && !ours) return { route: 'chown', reason: `the overlay's upper directory ${overlay.upperdir} holds files and is not the range's (${upper.uid}:${upper.gid})` };
    if (!(facts.lowerOwners ?? []).every((o) => o.uid === 0 && o.gid === 0)) return { route: 'chown', reason: "a lower layer's root is not owned by host root" };
    return { route: 'overlay', layout: overlay };
  }
  if (facts.rootOwner.uid !== 0 || facts.rootOwner.gid !== 0) return { route: 'chown', reason: `the rootfs is owned by ${facts.rootOwner.uid}:${facts.rootOwner.gid}, not by host root` };
  if (facts.mountAt?.mountOptions.includes('idmapped')) return { route: 'chown', reason: 'the rootfs is an idmapped mount already' };
  if (facts.rawClosedBy === undefined) {
    const where = facts.rawOpenAt === undefined ? 'the raw rootfs' : `the raw rootfs at ${facts.rawOpenAt}`;
    return { route: 'chown', reason: `every host user can reach ${where} (no directory above it is closed to all but root), so files container root writes through an idmapped mount would be host root files within their reach` };
  }
  return { route: 'directory' };
}

async function readFacts(rootfs: string, opts: ShimRootfsOptions): Promise<ShimRootfsFacts> {
  const mounts = visibleMounts(parseMountinfo(readFileSync(opts.mountinfoPath ?? '/proc/self/mountinfo', 'utf8')));
  const mountAt = mounts.find((m) => m.mountPoint === rootfs);
  const st = await fs.stat(rootfs);
  const facts: ShimRootfsFacts = { rootOwner: { uid: st.uid, gid: st.gid }, shiftRecorded: readStateFast(opts.stateDir, rootfs) !== undefined, ...(mountAt ? { mountAt } : {}) };
  const layout = mountAt?.fsType === 'overlay' ? overlayLayout(mountAt) : undefined;
  if (layout && !('unsupported' in layout)) {
    const upper = await fs.stat(layout.upperdir);
    facts.upper = { uid: upper.uid, gid: upper.gid, empty: (await fs.readdir(layout.upperdir)).length === 0 };
    facts.lowerOwners = await Promise.all(layout.lowerdirs.map(async (dir) => fs.stat(dir).then((s) => ({ uid: s.uid, gid: s.gid }))));
  } else {
    const access = await readRawTreeAccess(rootfs, [], { containerId: opts.containerId, mountinfoPath: opts.mountinfoPath });
    if ('closedBy' in access) facts.rawClosedBy = access.closedBy;
    else facts.rawOpenAt = access.openAt;
  }
  return facts;
}

/** Makes STATEDIR/rootfs/ID (mode 0700, owner `owner`), with STATEDIR and STATEDIR/rootfs searchable by others. */
async function makePrivateDir(dir: string, stateDir: string, owner: { uid: number; gid: number }, containerId: string, logger?: Logger): Promise<void> {
  const base = join(stateDir, 'rootfs');
  try {
    // The registry makes it as 0700 too; a container in the engine's user namespace may come before any range.
    await fs.mkdir(stateDir, { mode: 0o700, recursive: true });
    const st = await fs.stat(stateDir);
    if (!(st.mode & 0o001)) {
      // Container root passes through it to its own 0700 directory; the registry (0644) is all others could then read by name.
      await fs.chmod(stateDir, (st.mode & 0o7777) | 0o001);
      logger?.info(`let others search ${stateDir} so container root can reach its private rootfs mount`, { path: stateDir });
    }
    await fs.mkdir(base, { mode: 0o711, recursive: true });
    await fs.mkdir(dir, { mode: 0o700 });
    await fs.chown(dir, owner.uid, owner.gid);
  } catch (error) {
    throw systemError('cannot make the private rootfs directory', dir, error, { containerId });
  }
}

/** A route chosen for a rootfs (its real path) and the range's root, before anything changes. */
export interface ShimRootfsChoice {
  rootfs: string;
  range: { uid: number; gid: number };
  route: ShimRoute;
}

/** Reads the facts and chooses the route (shimRoute); changes nothing. Throws SystemError when the rootfs cannot be resolved. */
export async function chooseShimRootfs(opts: ShimRootfsOptions): Promise<ShimRootfsChoice> {
  let rootfs: string;
  try {
    rootfs = await fs.realpath(opts.rootfs);
  } catch (error) {
    throw systemError('cannot resolve the rootfs', opts.rootfs, error, { containerId: opts.containerId });
  }
  const range = { uid: toHost(opts.uidMappings, 0)!, gid: toHost(opts.gidMappings, 0)! };
  return { rootfs, range, route: shimRoute(await readFacts(rootfs, opts), range) };
}

/** chooseShimRootfs, then applyShimRootfs. */
export async function prepareShimRootfs(opts: ShimRootfsOptions): Promise<ShimRootfs> {
  const elapsed = stopwatch();
  return applyShimRootfs(await chooseShimRootfs(opts), opts, elapsed);
}

/**
 * Gives container root the rootfs by an idmapped mount on the chosen route
 * (see the top of this file); `elapsed` (lib/log/stopwatch.ts) started when
 * the choice began, for the figure returned. Throws SystemError when a step
 * fails midway (nothing is left mounted or changed then).
 */
export async function applyShimRootfs(choice: ShimRootfsChoice, opts: ShimRootfsOptions, elapsed = stopwatch()): Promise<ShimRootfs> {
  const { containerId, logger } = opts;
  const { rootfs, range, route } = choice;
  if (route.route === 'chown') return route;
  const dir = privateDir(opts.stateDir, containerId);
  const userns = await mappingUserns({ uidMappings: opts.uidMappings, gidMappings: opts.gidMappings, containerId });
  try {
    if (route.route === 'overlay') {
      await makePrivateDir(dir, opts.stateDir, { uid: 0, gid: 0 }, containerId, logger);
      try {
        const result = await idmapOverlay({ rootfs, layout: route.layout, usernsFile: userns.usernsFile, owner: range, scratch: dir, helper: opts.helper, containerId, logger });
        return result.action === 'idmapped' ? { route: 'overlay', lowers: result.lowers, ms: result.ms } : { route: 'chown', reason: result.reason };
      } finally {
        await fs.rmdir(dir);
      }
    }
    await makePrivateDir(dir, opts.stateDir, range, containerId, logger);
    const rootPath = join(dir, 'root');
    await fs.mkdir(rootPath, { mode: 0o755 });
    // Never a recursive removal: a mount left below would take the raw tree with it.
    const removeEmpty = async () => {
      await fs.rmdir(rootPath);
      await fs.rmdir(dir);
    };
    const outcome = await idmapMount({ helper: opts.helper, source: rootfs, target: rootPath, usernsFile: userns.usernsFile, containerId }).catch(async (error) => {
      await removeEmpty();
      throw error;
    });
    if (outcome.outcome === 'unsupported') {
      await removeEmpty();
      return { route: 'chown', reason: outcome.reason };
    }
    logger?.info('idmapped the rootfs at a private mount point', { containerId, path: rootfs, rootPath });
    return { route: 'directory', rootPath, ms: Math.round(elapsed() * 100) / 100 };
  } finally {
    userns.close();
  }
}

/**
 * Undoes a 'directory' route once the container is gone: unmounts
 * STATEDIR/rootfs/ID/root and removes the directory. Returns whether there
 * was anything; throws SystemError when the unmount fails.
 */
export async function releaseShimRootfs(opts: { stateDir: string; containerId: string; logger?: Logger; mountinfoPath?: string }): Promise<boolean> {
  const dir = privateDir(opts.stateDir, opts.containerId);
  // Most containers have none; without the directory nothing is mounted below it (a mount point cannot be removed), so no mountinfo to read.
  try {
    if (lstatSync(dir, { throwIfNoEntry: false }) === undefined) return false;
  } catch (error) {
    throw systemError('cannot stat', dir, error, { containerId: opts.containerId });
  }
  const rootPath = join(dir, 'root');
  const mounts = parseMountinfo(readFileSync(opts.mountinfoPath ?? '/proc/self/mountinfo', 'utf8'));
  const mounted = mounts.filter((m) => m.mountPoint === rootPath).length;
  for (let i = 0; i < mounted; i++) await mountTool('umount', [rootPath], { path: rootPath, containerId: opts.containerId });
  try {
    // rmdir, never a recursive removal: were the root still mounted, that would empty the raw tree.
    try {
      rmdirSync(rootPath);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw error;
    }
    rmdirSync(dir);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return mounted > 0;
    throw systemError('cannot remove the private rootfs directory', dir, error, { containerId: opts.containerId });
  }
  opts.logger?.info('unmounted the private rootfs mount', { containerId: opts.containerId, path: rootPath });
  return true;
}
