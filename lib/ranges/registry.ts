// The on-disk registry of host id ranges: STATEDIR/ranges.json, one JSON
// document, replaced atomically (lib/sys/atomic-file.ts) under the lock
// STATEDIR/ranges.lock (lib/sys/lock.ts), so a crash leaves the old or the
// new document, never half of one. Readers need no
// lock. A document that does not parse is never reset: the error names it
// and `oci-userns gc --repair` moves it aside and rebuilds it.
// File operations are synchronous: the hook runs one at a time, and the
// first asynchronous one in a process alone costs milliseconds.

import { lstatSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, HostError, RefusedError, systemError } from '../errors';
import { validateIdMap, type IdMapping } from '../oci/idmap';
import { writeFileAtomic } from '../sys/atomic-file';
import { withLock } from '../sys/lock';
import type { Logger } from '../log/logger';

export const REGISTRY_FILE = 'ranges.json';
export const LOCK_DIR = 'ranges.lock';
const VERSION = 1;

export type RangeSource = 'shim' | 'external' | 'cli';
const SOURCES: readonly RangeSource[] = ['shim', 'external', 'cli'];

export interface RangeEntry {
  id: string;
  /** The container's name (annotation), which the preferred block was derived from. */
  name?: string;
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  /** When the entry was made, ISO 8601. */
  since: string;
  /** Who chose the range: our shim, someone else (podman, CRI-O, a person's spec), or `oci-userns alloc`. */
  source: RangeSource;
  /** The container's init process and its start time, once the hook saw it. */
  pid?: number;
  pidStart?: number;
  /** The runtime's state directory, when known. */
  runtimeRoot?: string;
  /** Real path of the container's rootfs, when the hook or the shim knew it (lib/ranges/rootfs-users.ts). */
  rootfs?: string;
  /** Its tree, `major:minor:path inside the filesystem` (lib/rootfs/tree.ts treeKey): what the rootfs-in-use check compares; absent in entries written before. */
  rootfsTree?: string;
  /** The container sees its rootfs through an idmapped mount: the raw tree keeps its original owners (lib/ranges/rootfs-users.ts); absent when it owns the raw tree. */
  rootfsIdmapped?: true;
  /** The registered container whose user namespace this one joined by path (runtime-spec linux.namespaces path): it shares that range. */
  joined?: string;
}

export interface RegistryOptions {
  stateDir: string;
  lockTimeoutMs?: number;
  logger?: Logger;
}

export const registryPath = (stateDir: string) => join(stateDir, REGISTRY_FILE);

export const REPAIR_HINT = 'it was left untouched; look at it, then run oci-userns gc --repair, which moves it aside and rebuilds the registry from the running containers';

/**
 * Refuses a state directory that someone other than the user running
 * oci-userns (root in production, where the runtime runs the hook) could
 * change: a symlink, another owner, group- or world-writable. The registry
 * decides which host ids containers get. Creates it (mode 0700) when
 * `create` is set.
 */
export async function checkStateDir(stateDir: string, create: boolean): Promise<boolean> {
  let st;
  try {
    st = lstatSync(stateDir);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw systemError('cannot stat', stateDir, error);
    if (!create) return false;
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    } catch (mkdirError) {
      throw systemError('cannot create', stateDir, mkdirError);
    }
    st = lstatSync(stateDir);
  }
  const euid = process.geteuid?.() ?? 0;
  const create0700 = `install -d -m 0700${euid === 0 ? ' -o root -g root' : ''} ${stateDir}`;
  if (st.isSymbolicLink()) throw new RefusedError(`state directory ${stateDir} is a symlink`, { path: stateDir, hint: `replace it with a directory: rm ${stateDir} && ${create0700}` });
  if (!st.isDirectory()) throw new RefusedError(`state directory ${stateDir} is not a directory`, { path: stateDir, hint: `move it away, then: ${create0700}` });
  if (st.uid !== euid) {
    const me = euid === 0 ? 'root' : `uid ${euid}, the user running oci-userns`;
    const hint = euid === 0 ? `chown root:root ${stateDir}` : `set stateDir in the config file to a directory uid ${euid} owns, or run as root`;
    throw new RefusedError(`state directory ${stateDir} is owned by uid ${st.uid}, not ${me}`, { path: stateDir, hint });
  }
  if (st.mode & 0o022) throw new RefusedError(`state directory ${stateDir} is writable by group or others`, { path: stateDir, hint: `chmod go-w ${stateDir}` });
  return true;
}

function corrupt(path: string, why: string, cause?: unknown): HostError {
  return new HostError(`registry ${path} is corrupt: ${why}`, { path, hint: REPAIR_HINT, cause });
}

function parseEntry(value: unknown, index: number, path: string): RangeEntry {
  const where = `entry ${index}`;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw corrupt(path, `${where} is not an object`);
  const e = value as Record<string, unknown>;
  if (typeof e.id !== 'string' || e.id === '') throw corrupt(path, `${where} has no id`);
  const label = `entry ${index} (${e.id})`;
  const optional = (key: string, type: 'string' | 'number') => {
    if (e[key] === undefined) return;
    if (typeof e[key] !== type || (type === 'number' && !Number.isSafeInteger(e[key]))) throw corrupt(path, `${label}: ${key} is not ${type === 'number' ? 'an integer' : 'a string'}`);
  };
  if (typeof e.since !== 'string' || Number.isNaN(Date.parse(e.since))) throw corrupt(path, `${label}: since is not a date`);
  if (!SOURCES.includes(e.source as RangeSource)) throw corrupt(path, `${label}: source must be one of ${SOURCES.join(', ')}`);
  optional('name', 'string');
  optional('runtimeRoot', 'string');
  optional('joined', 'string');
  optional('rootfs', 'string');
  optional('rootfsTree', 'string');
  optional('pid', 'number');
  optional('pidStart', 'number');
  if (e.rootfsIdmapped !== undefined && e.rootfsIdmapped !== true) throw corrupt(path, `${label}: rootfsIdmapped is not true`);
  for (const key of ['uidMappings', 'gidMappings']) {
    if (!Array.isArray(e[key]) || e[key].length === 0) throw corrupt(path, `${label}: ${key} is not a non-empty list`);
    try {
      validateIdMap(e[key] as IdMapping[], `${label} ${key}`);
    } catch (error) {
      throw corrupt(path, (error as Error).message, error);
    }
  }
  return e as unknown as RangeEntry;
}

/** Parses a registry document; HostError naming the file when it is not one. */
export function parseRegistry(text: string, path: string): RangeEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw corrupt(path, text.trim() === '' ? 'it is empty' : `it is not JSON (${(error as Error).message})`, error);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw corrupt(path, 'it is not a JSON object');
  const { version, entries } = doc as { version?: unknown; entries?: unknown };
  if (version !== VERSION) throw corrupt(path, `version is ${JSON.stringify(version)}, this program reads version ${VERSION}`);
  if (!Array.isArray(entries)) throw corrupt(path, 'entries is not a list');
  const parsed = entries.map((e, i) => parseEntry(e, i, path));
  const ids = new Set<string>();
  for (const e of parsed) {
    if (ids.has(e.id)) throw corrupt(path, `container ${e.id} has two entries`);
    ids.add(e.id);
  }
  return parsed;
}

/** One entry per line: readable, greppable, and a third the size of indented JSON (the hook reads it at every start). */
export function formatRegistry(entries: readonly RangeEntry[]): string {
  if (entries.length === 0) return `{"version":${VERSION},"entries":[]}\n`;
  return `{"version":${VERSION},"entries":[\n${entries.map((e) => JSON.stringify(e)).join(',\n')}\n]}\n`;
}

/** The registry's text as read, or undefined when it does not exist yet. */
function readRegistryText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw systemError('cannot read', path, error);
  }
}

/** The entries on disk; none when the registry does not exist yet. Needs no lock. */
export async function readRegistry(stateDir: string): Promise<RangeEntry[]> {
  const path = registryPath(stateDir);
  const text = readRegistryText(path);
  return text === undefined ? [] : parseRegistry(text, path);
}

/** Replaces the registry atomically and durably (lib/sys/atomic-file.ts). Call with the lock held. */
export function writeRegistry(stateDir: string, entries: readonly RangeEntry[]): void {
  writeFileAtomic(registryPath(stateDir), formatRegistry(entries), { mode: 0o644, operation: 'cannot write the registry' });
}

export interface Update<T> {
  entries: RangeEntry[];
  result: T;
}

/**
 * Reads the registry under the lock, lets `change` compute the new entries
 * (it may throw to change nothing), and writes them when they differ.
 */
export async function updateRegistry<T>(opts: RegistryOptions, change: (entries: RangeEntry[]) => Promise<Update<T>> | Update<T>): Promise<T> {
  await checkStateDir(opts.stateDir, true);
  const lock = { path: join(opts.stateDir, LOCK_DIR), timeoutMs: opts.lockTimeoutMs, logger: opts.logger };
  return withLock(lock, async () => {
    const path = registryPath(opts.stateDir);
    const text = readRegistryText(path);
    const before = text === undefined ? [] : parseRegistry(text, path);
    const { entries, result } = await change(before);
    if (entries !== before && formatRegistry(entries) !== (text ?? formatRegistry([]))) writeRegistry(opts.stateDir, entries);
    return result;
  });
}
