// Which live containers use a rootfs: the registry records each
// container's rootfs (its real path, for people, and its tree: device and
// path inside the filesystem, lib/rootfs/tree.ts) when the hook guards it
// or the shim allocates for it. Trees are compared, not paths: the hook
// sees the shim's idmapped mount of a tree (STATEDIR/rootfs/ID/root), a
// person may name it through a bind mount; both are the same tree. A tree
// shifted to other ids under a running container shows that container every
// file as 65534 (issue 14, item 3), so the hook, the shim and `oci-userns
// shift` refuse before changing anything.
//
// What containers must agree on is the owners of the raw tree: a container
// that owns its rootfs through the chown shift needs the raw tree in its
// range; one that sees it through an idmapped mount needs it left with its
// original owners, whatever its range (the mount does the mapping, per
// mount). So any number of idmapped containers, each with its own range,
// share one tree (runc's integration tests start several containers from
// one bundle), and no container shifts a tree an idmapped one uses.

import { RefusedError } from '../errors';
import { formatIdMap, isIdentity, sameIdMap, type IdMap } from '../oci/idmap';
import { readTreeKey } from '../rootfs/tree';
import { isRunning } from '../sys/process-identity';
import { checkStateDir, readRegistry, type RangeEntry } from './registry';

export interface RootfsUse {
  /** The container about to use the tree (its own entry is no conflict); none for `oci-userns shift`. */
  id?: string;
  /** Real path of the rootfs. */
  rootfs: string;
  /** Its tree, lib/rootfs/tree.ts treeKey; entries or uses without one are compared by path. */
  tree?: string;
  /** The ids the tree is about to get; the identity for an unshift. */
  uidMappings: IdMap;
  gidMappings: IdMap;
  /** The container sees the tree through an idmapped mount: the raw tree keeps its original owners. */
  idmapped?: boolean;
  procRoot?: string;
}

/** The rootfs (a real path) and its tree, as an entry records them; nothing when there is none. SystemError when mountinfo cannot be read. */
export function recordedRootfs(rootfs: string | undefined, mountinfoPath?: string): Pick<RangeEntry, 'rootfs' | 'rootfsTree'> {
  if (rootfs === undefined) return {};
  const tree = readTreeKey(rootfs, mountinfoPath);
  return { rootfs, ...(tree !== undefined ? { rootfsTree: tree } : {}) };
}

/** Whether an entry's rootfs is the tree in use: by tree when both know theirs (entries written before trees were recorded have none), else by path. */
export function sameRootfs(e: Pick<RangeEntry, 'rootfs' | 'rootfsTree'>, use: Pick<RootfsUse, 'rootfs' | 'tree'>): boolean {
  return e.rootfsTree !== undefined && use.tree !== undefined ? e.rootfsTree === use.tree : e.rootfs === use.rootfs;
}

/** The owners a user of a tree needs it to have on disk: its original ones (an idmapped mount, an unshift) or a range's. */
function rawOwners(user: { uidMappings: IdMap; gidMappings: IdMap; idmapped?: boolean }): 'original' | { uidMappings: IdMap; gidMappings: IdMap } {
  return user.idmapped === true || (isIdentity(user.uidMappings) && isIdentity(user.gidMappings)) ? 'original' : user;
}

function sameRawOwners(a: ReturnType<typeof rawOwners>, b: ReturnType<typeof rawOwners>): boolean {
  if (a === 'original' || b === 'original') return a === b;
  return sameIdMap(a.uidMappings, b.uidMappings) && sameIdMap(a.gidMappings, b.gidMappings);
}

/** Whether `e` owns the tree `use` names through the chown shift (not an idmapped mount), with ids other than the identity. */
export function ownsTree(e: RangeEntry, use: Pick<RootfsUse, 'rootfs' | 'tree'>): boolean {
  return e.rootfs !== undefined && !e.rootfsIdmapped && sameRootfs(e, use) && !(isIdentity(e.uidMappings) && isIdentity(e.gidMappings));
}

/**
 * Whether `e` and `use` own one tree with the same ids. Containers that
 * share a writable tree can take each other over through it whatever their
 * ranges (one writes a binary the other runs), so a container started on a
 * tree another one owns gets that one's range (lib/ranges/ranges.ts
 * allocateRange), and the guard lets such ranges overlap.
 */
export function sharesOwnedTree(e: RangeEntry, use: RootfsUse): boolean {
  return !use.idmapped && ownsTree(e, use) && sameIdMap(e.uidMappings, use.uidMappings) && sameIdMap(e.gidMappings, use.gidMappings);
}

/**
 * Refuses (RefusedError, exit 5) when another live container (lib/ranges/ranges.ts
 * liveness: its recorded process runs, or it has none yet) uses the rootfs
 * and needs other owners on the raw tree (see the top of this file).
 * Changes nothing.
 */
export async function refuseRootfsInUse(entries: readonly RangeEntry[], use: RootfsUse): Promise<void> {
  const users: RangeEntry[] = [];
  for (const e of entries) {
    if (e.id === use.id || !sameRootfs(e, use)) continue;
    if (sameRawOwners(rawOwners({ ...e, idmapped: e.rootfsIdmapped }), rawOwners(use))) continue;
    if (e.pid === undefined || (await isRunning(e.pid, e.pidStart, use.procRoot))) users.push(e);
  }
  if (users.length === 0) return;
  const needs = rawOwners(use);
  const forWhom = use.id ? ` for container ${use.id}` : '';
  const change =
    needs !== 'original' ? `shifting it to uids ${formatIdMap(needs.uidMappings)}${forWhom}` : use.idmapped ? `an idmapped mount${forWhom}, which needs its original owners on disk,` : `giving it back its original owners${forWhom}`;
  const held = (e: RangeEntry) => (e.rootfsIdmapped ? 'idmapped' : `uids ${formatIdMap(e.uidMappings)}`);
  throw new RefusedError(`rootfs ${use.rootfs} is in use by container ${users.map((e) => `${e.id} (${held(e)}${e.rootfs !== use.rootfs ? `, through ${e.rootfs}` : ''})`).join(', ')}: ${change} would take its files from under it`, {
    ...(use.id ? { containerId: use.id } : {}),
    path: use.rootfs,
    hint: 'stop that container first, give this one the same ids, or give it a copy of the rootfs',
  });
}

/**
 * refuseRootfsInUse against the registry as it is on disk (no lock: for
 * `oci-userns shift`, which takes the tree's lock), with the tree of
 * `use.rootfs` read from this process's mountinfo when not given.
 */
export async function refuseRootfsInUseNow(stateDir: string, use: RootfsUse, opts: { mountinfoPath?: string } = {}): Promise<void> {
  if (!(await checkStateDir(stateDir, false))) return;
  const tree = use.tree ?? readTreeKey(use.rootfs, opts.mountinfoPath);
  await refuseRootfsInUse(await readRegistry(stateDir), { ...use, ...(tree !== undefined ? { tree } : {}) });
}
