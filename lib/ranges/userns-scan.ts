// The host ids other engines hold, so that "host-wide" means host-wide:
// every user namespace a live process is in (podman, CRI-O, LXC, nspawn,
// rootless users' namespaces: whoever made it) and the ranges
// containers/storage keeps for its containers, stopped ones included,
// since a stopped `--userns=auto` container comes back with the same range.
//
// Reading (I/O, procRoot and storage roots injectable) is apart from
// deciding (pure: maps to ranges in use). Nothing here takes the registry's
// lock: other engines never take it, so what they hold is read before it.
//
// A user namespace is known by the inode of /proc/PID/ns/user (namespaces(7));
// its maps are read once however many processes are in it. Field 2 of
// /proc/PID/uid_map is relative to the reader's user namespace
// (user_namespaces(7)), so the reader's own namespace is the one left out.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, HostError, systemError } from '../errors';
import { formatIdMap, isIdentity, parseProcIdMap, sameIdMap, type IdMapping } from '../oci/idmap';
import { processStart } from '../sys/process-identity';
import type { RangesInUse } from './allocator';

/**
 * Where containers/storage keeps its container lists: the graph root
 * (containers.json) and the run root (volatile-containers.json of a
 * transient store), each under `<driver>-containers/`. podman's and CRI-O's
 * rootful defaults (storage.conf graphroot and runroot).
 */
export const DEFAULT_STORAGE_ROOTS = ['/var/lib/containers/storage', '/run/containers/storage'];
const STORAGE_LISTS = ['containers.json', 'volatile-containers.json'];

export interface LiveNamespace {
  /** Inode of the namespace (/proc/PID/ns/user), when it could be read. */
  inode?: number;
  /** One process in it, for messages. */
  pid: number;
  /** How many live processes are in it. */
  processes: number;
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
}

export interface StoredContainer {
  /** containers/storage's container id (podman's and CRI-O's container id too). */
  id: string;
  names: string[];
  /** The list it came from. */
  file: string;
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
}

export interface ForeignIds {
  namespaces: LiveNamespace[];
  stored: StoredContainer[];
}

export interface ScanOptions {
  /** Where /proc is; tests point it elsewhere. Default /proc. */
  procRoot?: string;
  /** containers/storage roots; default DEFAULT_STORAGE_ROOTS. */
  storageRoots?: readonly string[];
}

const gone = (error: unknown) => ['ENOENT', 'ESRCH', 'ENOTDIR'].includes(errnoCode(error) ?? '');

/**
 * The inode of a process's user namespace; undefined when the process is
 * gone, or when the link may not be read (it needs ptrace access: a
 * process of another owner or that is not dumpable, under Yama).
 */
export function userNamespaceInode(pid: number | 'self', procRoot = '/proc'): number | undefined {
  const path = `${procRoot}/${pid}/ns/user`;
  let target: string;
  try {
    target = readlinkSync(path);
  } catch (error) {
    if (gone(error) || errnoCode(error) === 'EACCES' || errnoCode(error) === 'EPERM') return undefined;
    throw systemError('cannot read', path, error);
  }
  const match = /^user:\[(\d+)\]$/.exec(target);
  if (!match) throw systemError('cannot read', path, new Error(`unexpected link target '${target}'`));
  return Number(match[1]);
}

/** A process's uid and gid maps, or undefined when the process is gone. */
export function readProcessMaps(pid: number, procRoot = '/proc'): { uidMappings: IdMapping[]; gidMappings: IdMapping[] } | undefined {
  const read = (name: string) => {
    const path = `${procRoot}/${pid}/${name}`;
    try {
      return parseProcIdMap(readFileSync(path, 'utf8'), path);
    } catch (error) {
      if (gone(error)) return undefined;
      throw systemError('cannot read', path, error);
    }
  };
  const uidMappings = read('uid_map');
  const gidMappings = uidMappings && read('gid_map');
  return uidMappings && gidMappings ? { uidMappings, gidMappings } : undefined;
}

/**
 * Every user namespace of a live process (zombies left out) but the
 * reader's own, each once (ids as the reader sees them). A process whose
 * namespace link may not be read still counts: its maps (world-readable)
 * are read, and such namespaces are told apart by their maps.
 */
export function readLiveNamespaces(procRoot = '/proc'): LiveNamespace[] {
  const own = userNamespaceInode('self', procRoot);
  const byKey = new Map<string, LiveNamespace | undefined>(own === undefined ? [] : [[`ns ${own}`, undefined]]);
  const found: LiveNamespace[] = [];
  let names: string[];
  try {
    names = readdirSync(procRoot);
  } catch (error) {
    throw systemError('cannot list', procRoot, error);
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const inode = userNamespaceInode(pid, procRoot);
    const known = inode === undefined ? undefined : byKey.get(`ns ${inode}`);
    if (inode !== undefined && byKey.has(`ns ${inode}`)) {
      if (known && processStart(pid, procRoot) !== undefined) known.processes += 1;
      continue;
    }
    // A zombie (killed, not yet reaped: a stopped container's init until its parent waits) runs nothing with any id.
    if (processStart(pid, procRoot) === undefined) continue;
    const maps = readProcessMaps(pid, procRoot);
    // Gone since it was listed: its namespace is met again through another process, or is gone.
    if (maps === undefined) continue;
    const key = inode === undefined ? `maps ${formatIdMap(maps.uidMappings)} ${formatIdMap(maps.gidMappings)}` : `ns ${inode}`;
    const same = byKey.get(key);
    if (same) {
      same.processes += 1;
      continue;
    }
    const ns: LiveNamespace = { ...(inode === undefined ? {} : { inode }), pid, processes: 1, ...maps };
    byKey.set(key, ns);
    found.push(ns);
  }
  return found;
}

interface StorageMap {
  container_id?: unknown;
  host_id?: unknown;
  size?: unknown;
}

/** containers/storage's idtools.IDMap list ({container_id, host_id, size}) as OCI mappings; undefined when it is not one. */
function storageMap(value: unknown): IdMapping[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const out: IdMapping[] = [];
  for (const m of value as StorageMap[]) {
    const { container_id: containerID, host_id: hostID, size } = m ?? {};
    if (![containerID, hostID, size].every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) return undefined;
    out.push({ containerID: containerID as number, hostID: hostID as number, size: size as number });
  }
  return out;
}

/** Parses one containers/storage list (containers.json): the containers that have a uid or gid map. */
export function parseStorageContainers(text: string, file: string): StoredContainer[] {
  let doc: unknown;
  const unreadable = (why: string, cause?: unknown) =>
    new HostError(`containers/storage list ${file} cannot be read: ${why}`, { path: file, cause, hint: 'the ids its containers hold cannot be known; check it with podman ps -a' });
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw unreadable((error as Error).message, error);
  }
  if (!Array.isArray(doc)) throw unreadable('it is not a JSON list');
  const out: StoredContainer[] = [];
  for (const c of doc as Array<Record<string, unknown>>) {
    const uidMappings = storageMap(c?.uidmap) ?? [];
    const gidMappings = storageMap(c?.gidmap) ?? [];
    if (uidMappings.length === 0 && gidMappings.length === 0) continue;
    const names = Array.isArray(c.names) ? c.names.filter((n): n is string => typeof n === 'string') : [];
    out.push({ id: typeof c.id === 'string' ? c.id : '?', names, file, uidMappings, gidMappings });
  }
  return out;
}

/** The containers every containers/storage list under these roots records with a user namespace. */
export function readStoredContainers(roots: readonly string[] = DEFAULT_STORAGE_ROOTS): StoredContainer[] {
  const out: StoredContainer[] = [];
  for (const root of roots) {
    let dirs: string[];
    try {
      dirs = readdirSync(root).filter((d) => d.endsWith('-containers'));
    } catch (error) {
      if (gone(error)) continue;
      throw systemError('cannot list', root, error);
    }
    for (const dir of dirs) {
      for (const list of STORAGE_LISTS) {
        const file = join(root, dir, list);
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch (error) {
          if (gone(error)) continue;
          throw systemError('cannot read', file, error);
        }
        out.push(...parseStorageContainers(text, file));
      }
    }
  }
  return out;
}

/** Reads what other engines hold: live user namespaces and containers/storage's records. */
export function readForeignIds(opts: ScanOptions = {}): ForeignIds {
  return { namespaces: readLiveNamespaces(opts.procRoot), stored: readStoredContainers(opts.storageRoots) };
}

export interface InUseOptions {
  /** Namespaces not to count: the container's own, and those of registered containers (the registry speaks for them). */
  skipNamespaces?: ReadonlySet<number>;
  /** containers/storage ids not to count: the container's own record. */
  skipIds?: ReadonlySet<string>;
  /**
   * The maps of a namespace the container joined (one that other processes
   * were in already): containers/storage records with exactly these maps are
   * the other containers of its pod (CRI-O and podman record each of a pod's
   * containers with the pod's maps), not other holders.
   */
  joinedMaps?: { uidMappings: readonly IdMapping[]; gidMappings: readonly IdMapping[] };
}

/**
 * The host ids in use outside the registry, as the allocator's inUse list:
 * one row per namespace ("user namespace N (pid P)") or stored container
 * ("containers/storage container NAME"). A namespace whose map is the
 * identity holds nothing of its own (its ids are the host's) and is left out.
 */
export function foreignRangesInUse(ids: ForeignIds, opts: InUseOptions = {}): RangesInUse[] {
  const rows: RangesInUse[] = [];
  for (const ns of ids.namespaces) {
    if ((ns.inode !== undefined && opts.skipNamespaces?.has(ns.inode)) || (isIdentity(ns.uidMappings) && isIdentity(ns.gidMappings))) continue;
    rows.push({ id: `the user namespace of process ${ns.pid}${ns.inode === undefined ? '' : ` (user:[${ns.inode}])`}`, uidMappings: ns.uidMappings, gidMappings: ns.gidMappings });
  }
  for (const c of ids.stored) {
    if (opts.skipIds?.has(c.id)) continue;
    if (opts.joinedMaps && sameIdMap(c.uidMappings, opts.joinedMaps.uidMappings) && sameIdMap(c.gidMappings, opts.joinedMaps.gidMappings)) continue;
    rows.push({ id: `containers/storage container ${c.names[0] ?? c.id.slice(0, 12)} (${c.file})`, uidMappings: c.uidMappings, gidMappings: c.gidMappings });
  }
  return rows;
}

export interface ForeignOptions extends ScanOptions {
  /** The container being registered or allocated for: its own containers/storage record is no other holder. */
  id: string;
  /** The inode of the container's own user namespace, when its process exists. */
  ownNamespace?: number;
  /** The registered containers: the registry speaks for their namespaces and records. */
  registered: ReadonlyArray<{ id: string; pid?: number }>;
}

/**
 * What other engines hold that the registry does not speak for: not the
 * container's own namespace or record, not a registered container's, and
 * when the container joined a namespace other processes were in already,
 * not the records of its pod-mates.
 */
export function readForeignRangesInUse(opts: ForeignOptions): RangesInUse[] {
  const skipNamespaces = new Set<number>(opts.ownNamespace === undefined ? [] : [opts.ownNamespace]);
  for (const r of opts.registered) {
    const inode = r.pid === undefined ? undefined : userNamespaceInode(r.pid, opts.procRoot);
    if (inode !== undefined) skipNamespaces.add(inode);
  }
  const foreign = readForeignIds(opts);
  const own = opts.ownNamespace === undefined ? undefined : foreign.namespaces.find((n) => n.inode === opts.ownNamespace);
  return foreignRangesInUse(foreign, { skipNamespaces, skipIds: new Set([opts.id, ...opts.registered.map((r) => r.id)]), ...(own && own.processes > 1 ? { joinedMaps: own } : {}) });
}
