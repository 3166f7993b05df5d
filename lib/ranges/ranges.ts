// The operations on the registry of host id ranges: the hook guards and
// releases every user-namespaced container, the shim and `oci-userns alloc`
// allocate, `ranges` lists, `gc` drops what is gone. Each is one locked
// read-change-write of lib/ranges/registry.ts; deciding is lib/ranges/allocator.ts.
//
// An entry whose recorded process is gone (a container that died without
// its poststop hook) never blocks anyone: allocation and guarding drop it.
// An entry without a process (allocated, not started yet) counts as live.
//
// Host-wide: allocating and registering a new range also count the ids
// other engines hold (lib/ranges/userns-scan.ts), read under the lock. A
// container that joined a registered container's user namespace by path
// shares its ids: it is recorded with the same ranges (`joined`), so the
// ids stay in use until the last container in the namespace is gone.

import { promises as fs, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import type { OverlapPolicy, PoolConfig } from '../config/config';
import { errnoCode, InputError, RefusedError, systemError } from '../errors';
import { formatIdMap, hostRangesOverlap, idMapSize, isIdentity, sameIdMap, validateIdMap, type IdMapping } from '../oci/idmap';
import { withLock } from '../sys/lock';
import { parseMountinfo, visibleMounts } from '../sys/mountinfo';
import type { Logger } from '../log/logger';
import { isRunning, processStart } from '../sys/process-identity';
import { checkStateDir, LOCK_DIR, readRegistry, registryPath, updateRegistry, writeRegistry, type RangeEntry } from './registry';
import type { RangesInUse } from './allocator';
import { DEFAULT_RUNTIME_ROOTS, findRuntimeContainer, listRuntimeContainers, type RuntimeContainer } from './runtime-state';
import { ownsTree, recordedRootfs, refuseRootfsInUse, sharesOwnedTree } from './rootfs-users';
import { readPool } from './subid';
import { readForeignRangesInUse, readProcessMaps, userNamespaceInode } from './userns-scan';

export type { RangeEntry, RangeSource } from './registry';

interface Common {
  stateDir: string;
  logger?: Logger;
  /** Where /proc is; tests point it elsewhere. */
  procRoot?: string;
  lockTimeoutMs?: number;
  /** containers/storage roots whose container lists count as in use; default /var/lib/containers/storage and /run/containers/storage. */
  storageRoots?: readonly string[];
  /** The mountinfo a rootfs's tree is read from (lib/rootfs/tree.ts); /proc/self/mountinfo by default (tests). */
  mountinfoPath?: string;
}

async function isLive(entry: RangeEntry, procRoot?: string): Promise<boolean> {
  return entry.pid === undefined || isRunning(entry.pid, entry.pidStart, procRoot);
}

/** Splits entries into those still in use and those whose process is gone. */
async function partitionLive(entries: readonly RangeEntry[], procRoot?: string): Promise<{ live: RangeEntry[]; gone: RangeEntry[] }> {
  const live: RangeEntry[] = [];
  const gone: RangeEntry[] = [];
  for (const e of entries) (await isLive(e, procRoot) ? live : gone).push(e);
  return { live, gone };
}

function logDropped(gone: readonly RangeEntry[], why: string, logger?: Logger): void {
  for (const e of gone) logger?.info(`dropped the range of container ${e.id}: ${why}`, { containerId: e.id, uidMappings: formatIdMap(e.uidMappings), gidMappings: formatIdMap(e.gidMappings) });
}

const describe = (e: RangesInUse & Partial<Pick<RangeEntry, 'source' | 'since'>>) =>
  `${e.id} (uids ${formatIdMap(e.uidMappings)}, gids ${formatIdMap(e.gidMappings)}${e.source ? `, ${e.source}, since ${e.since}` : ', not in the registry'})`;

function overlaps(e: RangeEntry, uidMappings: IdMapping[], gidMappings: IdMapping[]): boolean {
  return hostRangesOverlap(e.uidMappings, uidMappings) || hostRangesOverlap(e.gidMappings, gidMappings);
}

export interface GuardOptions extends Common {
  id: string;
  name?: string;
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  source: 'shim' | 'external';
  /** The container's init process, recorded so that `gc` and later guards can tell it is gone. */
  pid?: number;
  runtimeRoot?: string;
  /** Real path of the rootfs: recorded, and refused while another live container needs other owners on its raw tree (lib/ranges/rootfs-users.ts). */
  rootfs?: string;
  /** The container sees the rootfs through an idmapped mount (true) or owns its raw tree (false); unset: as the container's entry says when it is of this run (no process recorded yet, or this one: the shim's choice), else false. */
  rootfsIdmapped?: boolean;
  overlap: OverlapPolicy;
}

export interface GuardResult {
  entry: RangeEntry;
  /** Live containers and other engines' namespaces whose ids overlap (only with overlap 'warn'; 'refuse' throws instead). */
  conflicts: RangesInUse[];
  /** The entry was made by this call (not there before, or there with other ids): give it back if the container then fails to start. */
  created: boolean;
}

/**
 * Registers a user-namespaced container's ranges. Refuses (RefusedError,
 * nothing changed) when they overlap a different live container's or ids
 * another engine holds (a live user namespace, a containers/storage
 * record), unless `overlap` is 'warn'. A container whose process is in a
 * registered container's user namespace (it joined it by path) is no
 * overlap: it is recorded with `joined` naming that container. Idempotent
 * for the same id and mappings: the entry keeps its source and since, and
 * gains the pid.
 */
export async function guardContainer(opts: GuardOptions): Promise<GuardResult> {
  const { id, logger, procRoot } = opts;
  const uidMappings = validateIdMap(opts.uidMappings, `container ${id} uidMappings`);
  const gidMappings = validateIdMap(opts.gidMappings, `container ${id} gidMappings`);
  const pidStart = opts.pid === undefined ? undefined : await processStart(opts.pid, procRoot);
  const ownNamespace = opts.pid === undefined ? undefined : userNamespaceInode(opts.pid, procRoot);
  const rootfs = recordedRootfs(opts.rootfs, opts.mountinfoPath);
  return updateRegistry(opts, async (entries) => {
    const existing = entries.find((e) => e.id === id);
    const same = existing !== undefined && sameIdMap(existing.uidMappings, uidMappings) && sameIdMap(existing.gidMappings, gidMappings);
    // The mark of this same run only (the shim's allocation, no process yet): an earlier run's says nothing of the tree now.
    const idmapped = opts.rootfsIdmapped ?? (same && existing.rootfsIdmapped === true && (existing.pid === undefined || existing.pid === opts.pid));
    const use = rootfs.rootfs === undefined ? undefined : { id, rootfs: rootfs.rootfs, tree: rootfs.rootfsTree, uidMappings, gidMappings, idmapped, procRoot };
    if (use) await refuseRootfsInUse(entries, use);
    const { live, gone } = await partitionLive(
      entries.filter((e) => e.id !== id && overlaps(e, uidMappings, gidMappings)),
      procRoot,
    );
    const inNamespace = (e: RangeEntry) => ownNamespace !== undefined && e.pid !== undefined && userNamespaceInode(e.pid, procRoot) === ownNamespace;
    const joined = live.find(inNamespace);
    const conflicts: RangesInUse[] = live.filter((e) => !inNamespace(e) && !(use && sharesOwnedTree(e, use)));
    // Checked when the range is registered; a container already registered with it was checked then.
    if (!same && !joined) {
      conflicts.push(...readForeignRangesInUse({ ...opts, registered: entries, ownNamespace }).filter((f) => hostRangesOverlap(f.uidMappings, uidMappings) || hostRangesOverlap(f.gidMappings, gidMappings)));
    }
    if (conflicts.length > 0) {
      const message = `container ${id}: its host ids (uids ${formatIdMap(uidMappings)}, gids ${formatIdMap(gidMappings)}) overlap those of ${conflicts.map(describe).join('; ')}`;
      if (opts.overlap === 'refuse') {
        throw new RefusedError(message, {
          containerId: id,
          hint: 'give it host ids no other container uses (oci-userns ranges lists them, oci-userns alloc picks free ones), or set "overlap": "warn" in the config file',
        });
      }
      logger?.warn(message, { containerId: id });
    }
    logDropped(gone, 'its process is gone', logger);
    if (existing && !same) logger?.warn(`container ${id} was registered with other ids (uids ${formatIdMap(existing.uidMappings)}); registering its new ones`, { containerId: id });
    const base: RangeEntry = same ? existing : { id, uidMappings, gidMappings, since: new Date().toISOString(), source: opts.source };
    const entry: RangeEntry = {
      ...base,
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      ...(opts.pid !== undefined ? { pid: opts.pid, pidStart } : {}),
      ...(opts.runtimeRoot !== undefined ? { runtimeRoot: opts.runtimeRoot } : {}),
      ...rootfs,
      ...(joined ? { joined: joined.joined ?? joined.id } : {}),
    };
    if (entry.pidStart === undefined) delete entry.pidStart;
    if (idmapped && rootfs.rootfs !== undefined) entry.rootfsIdmapped = true;
    else delete entry.rootfsIdmapped;
    if (joined) logger?.info(`container ${id} joined the user namespace of container ${joined.id}: it shares its range`, { containerId: id });
    // In place, so that guarding a registered container again rewrites nothing.
    const kept = entries.filter((e) => !gone.includes(e)).map((e) => (e.id === id ? entry : e));
    return { entries: existing ? kept : [...kept, entry], result: { entry, conflicts, created: !same } };
  });
}

/** Drops a container's entry (at poststop); returns it, or undefined when it had none. */
export async function releaseContainer(opts: Common & { id: string }): Promise<RangeEntry | undefined> {
  // Most containers a hook sees at poststop were registered, but checking
  // first without the lock keeps the others from queueing for it.
  if (!(await checkStateDir(opts.stateDir, false))) return undefined;
  if (!(await readRegistry(opts.stateDir)).some((e) => e.id === opts.id)) return undefined;
  return updateRegistry(opts, (entries) => {
    const entry = entries.find((e) => e.id === opts.id);
    if (entry) opts.logger?.info(`released the range of container ${opts.id}`, { containerId: opts.id, uidMappings: formatIdMap(entry.uidMappings) });
    return { entries: entries.filter((e) => e.id !== opts.id), result: entry };
  });
}

export interface AllocateOptions extends Common {
  pool: PoolConfig;
  id: string;
  /** The preferred block is derived from the name (else the id), so a container that comes back gets its old range. */
  name?: string;
  /** Ids needed; rounded up to whole blocks. Default one block. */
  size?: number;
  source: 'shim' | 'cli';
  /** Maps the pool user between name and uid; default /etc/passwd. */
  passwdFile?: string;
  /** Real path of the rootfs the range is for: recorded, and refused while another live container needs other owners on its raw tree. */
  rootfs?: string;
  /** The container is to see the rootfs through an idmapped mount; if it comes to own the raw tree after all, claimRootfsOwners before changing it. */
  rootfsIdmapped?: boolean;
}

/** Allocates a free block from the pool; for an id that has a range already, returns that range. */
export async function allocateRange(opts: AllocateOptions): Promise<RangeEntry> {
  const { id, logger } = opts;
  // Loaded here: choosing a block hashes with node:crypto, which the hook's guard and release never need.
  const { blockAlignedSize, chooseRange } = await import('./allocator');
  const size = opts.size === undefined ? undefined : blockAlignedSize(opts.size, opts.pool.blockSize);
  const pool = await readPool({ pool: opts.pool, passwdFile: opts.passwdFile, logger });
  const rootfs = recordedRootfs(opts.rootfs, opts.mountinfoPath);
  return updateRegistry(opts, async (entries) => {
    const existing = entries.find((e) => e.id === id);
    if (existing && existing.pid !== undefined && opts.source === 'shim' && (await isRunning(existing.pid, existing.pidStart, opts.procRoot))) {
      // A container the runtime of this call does not have (runtime-alone.ts asked it) but whose process runs: the same id under another runtime root.
      throw new RefusedError(`container id ${id} is in use by a running container (process ${existing.pid}, uids ${formatIdMap(existing.uidMappings)}), perhaps under another runtime root: two containers would share one range`, {
        containerId: id,
        hint: 'give this container another id, or delete the running one first',
      });
    }
    if (existing) {
      const has = idMapSize(existing.uidMappings);
      if (size !== undefined && size !== has) {
        throw new InputError(`container ${id} already has a range of ${has} ids (uids ${formatIdMap(existing.uidMappings)}), not ${size}`, {
          containerId: id,
          hint: `release it first: oci-userns release ${id}`,
        });
      }
      if (rootfs.rootfs === undefined) return { entries, result: existing };
      await refuseRootfsInUse(entries, { id, rootfs: rootfs.rootfs, tree: rootfs.rootfsTree, uidMappings: existing.uidMappings, gidMappings: existing.gidMappings, idmapped: opts.rootfsIdmapped, procRoot: opts.procRoot });
      const used: RangeEntry = { ...existing, ...rootfs, ...(opts.rootfsIdmapped ? { rootfsIdmapped: true } : {}) };
      if (!opts.rootfsIdmapped) delete used.rootfsIdmapped;
      return { entries: entries.map((e) => (e === existing ? used : e)), result: used };
    }
    const { live, gone } = await partitionLive(entries, opts.procRoot);
    logDropped(gone, 'its process is gone', logger);
    // A tree another live container of ours owns (chown-shifted into its range) can only be shared in that range; see sharesOwnedTree.
    const owner = rootfs.rootfs === undefined ? undefined : live.find((e) => e.source === 'shim' && ownsTree(e, { rootfs: rootfs.rootfs!, tree: rootfs.rootfsTree }) && (size === undefined || idMapSize(e.uidMappings) >= size));
    const choice = owner ? { uidMappings: owner.uidMappings, gidMappings: owner.gidMappings, preferred: false } : chooseRange({ pool, blockSize: opts.pool.blockSize, size, key: opts.name ?? id, inUse: [...live, ...readForeignRangesInUse({ ...opts, registered: live })] });
    const idmapped = opts.rootfsIdmapped === true && rootfs.rootfs !== undefined && owner === undefined;
    const entry: RangeEntry = {
      id,
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      uidMappings: choice.uidMappings,
      gidMappings: choice.gidMappings,
      since: new Date().toISOString(),
      source: opts.source,
      ...rootfs,
      ...(idmapped ? { rootfsIdmapped: true } : {}),
    };
    if (rootfs.rootfs !== undefined) await refuseRootfsInUse(live, { ...entry, rootfs: rootfs.rootfs, tree: rootfs.rootfsTree, idmapped, procRoot: opts.procRoot });
    if (owner) {
      logger?.warn(`container ${id} shares the range of container ${owner.id} (uids ${formatIdMap(owner.uidMappings)}): its rootfs ${rootfs.rootfs} is shifted into that range for it`, {
        containerId: id,
        hint: 'give each container its own rootfs, or close a directory above the rootfs to all but root so that each gets its own range through an idmapped mount',
      });
    } else {
      logger?.info(`allocated uids ${formatIdMap(entry.uidMappings)} and gids ${formatIdMap(entry.gidMappings)} to container ${id}`, { containerId: id, preferred: choice.preferred });
    }
    return { entries: [...live, entry], result: entry };
  });
}

/**
 * The container comes to own its rootfs's raw tree after all: it was
 * recorded as seeing it through an idmapped mount, and the mount was
 * refused (the chown shift follows) or not made (an overlay rebuilt with
 * an upper in its range, a tree already shifted). Refuses (RefusedError,
 * nothing changed) while another live container needs other owners on the
 * tree, else records the change. Call before the tree's owners change.
 * Nothing to do for a container without that mark.
 */
export async function claimRootfsOwners(opts: Common & { id: string }): Promise<void> {
  // Checked first without the lock: most containers are not marked.
  if (!(await checkStateDir(opts.stateDir, false))) return;
  if (!(await readRegistry(opts.stateDir)).some((e) => e.id === opts.id && e.rootfsIdmapped)) return;
  await updateRegistry(opts, async (entries) => {
    const entry = entries.find((e) => e.id === opts.id);
    if (!entry?.rootfsIdmapped || entry.rootfs === undefined) return { entries, result: undefined };
    await refuseRootfsInUse(entries, { id: entry.id, rootfs: entry.rootfs, tree: entry.rootfsTree, uidMappings: entry.uidMappings, gidMappings: entry.gidMappings, procRoot: opts.procRoot });
    const { rootfsIdmapped: _, ...owning } = entry;
    return { entries: entries.map((e) => (e === entry ? owning : e)), result: undefined };
  });
}

export async function listRanges(opts: { stateDir: string }): Promise<RangeEntry[]> {
  if (!(await checkStateDir(opts.stateDir, false))) return [];
  return readRegistry(opts.stateDir);
}

export interface GcOptions extends Common {
  /** Runtime state directories to look for containers in; default /run/runc and /run/crun. */
  runtimeRoots?: string[];
  /** An entry without a process and unknown to every runtime is dropped only after this long (the shim allocates before the runtime creates). Default 10 minutes. */
  graceMs?: number;
  now?: Date;
}

/**
 * Drops the entries of containers that no longer exist: the recorded
 * process is gone, or (no process recorded) no runtime knows the id and
 * the entry is older than the grace period. Entries made with `oci-userns
 * alloc` without a process are reservations: only `release` drops them.
 */
export async function gcRanges(opts: GcOptions): Promise<RangeEntry[]> {
  const roots = opts.runtimeRoots ?? DEFAULT_RUNTIME_ROOTS;
  const now = (opts.now ?? new Date()).getTime();
  const grace = opts.graceMs ?? 10 * 60_000;
  if (!(await checkStateDir(opts.stateDir, false))) return [];
  return updateRegistry(opts, async (entries) => {
    const dropped: RangeEntry[] = [];
    for (const e of entries) {
      let gone: boolean;
      if (e.pid !== undefined) gone = !(await isRunning(e.pid, e.pidStart, opts.procRoot));
      else if (e.source === 'cli') gone = false;
      else gone = now - Date.parse(e.since) > grace && (await findRuntimeContainer(e.runtimeRoot ? [e.runtimeRoot, ...roots] : roots, e.id)) === undefined;
      if (gone) dropped.push(e);
    }
    logDropped(dropped, 'the container no longer exists', opts.logger);
    return { entries: entries.filter((e) => !dropped.includes(e)), result: dropped };
  });
}

export interface RepairResult {
  /** Where the unreadable registry was moved, if there was one. */
  movedTo?: string;
  entries: RangeEntry[];
}

/**
 * A running container's rootfs as the runtime recorded it, kept as an entry
 * keeps it, so that the rootfs-in-use rule holds again after a repair; and
 * whether the container sees it through an idmapped mount (its `/` in
 * /proc/PID/mountinfo: the shim's private mount or the hook's). Nothing
 * when the runtime recorded none or it is gone.
 */
function repairedRootfs(c: RuntimeContainer, procRoot: string, mountinfoPath?: string): Pick<RangeEntry, 'rootfs' | 'rootfsTree' | 'rootfsIdmapped'> {
  if (c.rootfs === undefined) return {};
  let real: string;
  try {
    real = realpathSync(c.rootfs);
  } catch {
    // Its rootfs is gone from this mount namespace: nothing to protect here.
    return {};
  }
  let idmapped = false;
  try {
    idmapped = visibleMounts(parseMountinfo(readFileSync(`${procRoot}/${c.pid}/mountinfo`, 'utf8'))).some((m) => m.mountPoint === '/' && m.mountOptions.includes('idmapped'));
  } catch {
    // The process just ended: recorded as owning its tree, the careful reading.
  }
  return { ...recordedRootfs(real, mountinfoPath), ...(idmapped ? { rootfsIdmapped: true } : {}) };
}

/**
 * `oci-userns gc --repair`: moves the registry aside (kept, as
 * ranges.json.corrupt-TIME) and writes a new one from the running
 * containers the runtimes know, with the mappings the kernel shows for
 * their processes. Ranges allocated for containers not started yet are
 * not recoverable; their owners allocate again.
 */
export async function repairRegistry(opts: Common & { runtimeRoots?: string[] }): Promise<RepairResult> {
  const roots = opts.runtimeRoots ?? DEFAULT_RUNTIME_ROOTS;
  const procRoot = opts.procRoot ?? '/proc';
  await checkStateDir(opts.stateDir, true);
  return withLock({ path: join(opts.stateDir, LOCK_DIR), timeoutMs: opts.lockTimeoutMs, logger: opts.logger }, async () => {
    const path = registryPath(opts.stateDir);
    const movedTo = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    let moved = true;
    try {
      await fs.rename(path, movedTo);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw systemError('cannot move aside', path, error);
      moved = false;
    }
    const entries: RangeEntry[] = [];
    const since = new Date().toISOString();
    for (const c of await listRuntimeContainers(roots)) {
      if (c.pid === undefined || !(await isRunning(c.pid, c.pidStart, procRoot))) continue;
      const maps = readProcessMaps(c.pid, procRoot);
      if (!maps || isIdentity(maps.uidMappings)) continue;
      entries.push({ id: c.id, ...maps, since, source: 'external', pid: c.pid, ...(c.pidStart ? { pidStart: c.pidStart } : {}), runtimeRoot: c.root, ...repairedRootfs(c, procRoot, opts.mountinfoPath) });
    }
    await writeRegistry(opts.stateDir, entries);
    opts.logger?.warn(`rebuilt the registry from ${entries.length} running container${entries.length === 1 ? '' : 's'}${moved ? `; the old one is ${movedTo}` : ''}`, { path });
    return { ...(moved ? { movedTo } : {}), entries };
  });
}
