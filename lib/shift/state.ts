// The shift's state record (what a shift started, finished, and the
// ownership it gave the tree), its file under stateDir, and the O(1)
// question the hook asks on every container start: is this rootfs already
// owned per the mapping? Kept apart from the shift engine (lib/shift/shift.ts,
// a separate file of the build) and from the rootfs marker (marker.ts,
// which spawns getfattr) so that answering it loads neither.

import { lstatSync, mkdirSync, type BigIntStats, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { basename, isAbsolute, join } from 'node:path';
import { errnoCode, InputError, systemError } from '../errors';
import { writeFileAtomic } from '../sys/atomic-file';
import { pathHash } from '../sys/path-key';
import { sameIdMap, toHost, validateIdMap, type IdMap } from '../oci/idmap';
import type { Step } from './plan';

export interface Ownership {
  uid: IdMap;
  gid: IdMap;
}

/**
 * Which tree a record belongs to. `id` is random, written to the state file
 * and to the marker on the tree (marker.ts) alike: a tree deleted and
 * unpacked again at the same path carries no marker, or another id, so the
 * file no longer describes it. `ino` and `birthNs` (the root directory's
 * inode number and birth time, decimal, at full precision) let a pass over
 * the state files tell a replaced tree without reading markers.
 */
export interface TreeIdentity {
  id: string;
  ino: string;
  birthNs: string;
}

export interface ShiftState {
  version: 1;
  /** Absent in records written before trees were identified. */
  tree?: TreeIdentity;
  /** Grows with every write; the higher of file and xattr wins. */
  seq: number;
  rootfs: string;
  /** The ownership before the first shift: what unshift restores. */
  original: Ownership;
  /** The ownership the tree has when no shift is pending. */
  current: Ownership;
  /** The ownership before `current`, for verification passes. */
  previous: Ownership;
  /** Inodes the last pass saw: the progress display's estimate of the next one. */
  inodes?: number;
  /** A shift that started and has not finished: its steps and the one running. */
  pending?: {
    target: Ownership;
    steps: Step[];
    index: number;
    /** Moving back after a refusal: inodes outside the mapping were never moved, and are no error. */
    rollback?: boolean;
  };
}


/** Files of a rootfs's shift under stateDir/shift: state, journal, and the lock directory (lib/sys/lock.ts). */
export function statePaths(stateDir: string, rootfs: string): { dir: string; state: string; journal: string; lock: string } {
  const dir = join(stateDir, 'shift');
  // A collision is harmless: the state records its rootfs, and a mismatch reads as no state.
  const key = pathHash(rootfs);
  return { dir, state: join(dir, `${key}.json`), journal: join(dir, `${key}.journal`), lock: join(dir, `${key}.lock.d`) };
}

/**
 * Removes the record and journals of `rootfs` (its path as the shift
 * recorded it, resolved when it still exists): for a rootfs the engine
 * removes with its container, whose record would otherwise stay until the
 * next shift prunes it. Returns whether there was a record.
 */
export function forgetState(stateDir: string, rootfs: string): boolean {
  let real = rootfs;
  try {
    real = realpathSync(rootfs);
  } catch {
    // Gone already: the record is under the path as given.
  }
  const paths = statePaths(stateDir, real);
  let existed = true;
  try {
    lstatSync(paths.state);
  } catch {
    existed = false;
  }
  removeStateFiles(paths.dir, basename(paths.state, '.json'));
  return existed;
}

/** The record and journals of one tree, by its key in stateDir/shift. */
function removeStateFiles(dir: string, key: string): void {
  for (const file of [`${key}.json`, `${key}.journal`, `${key}.journal.verify`]) rmSync(join(dir, file), { force: true });
}

export function parseState(text: string, where: string): ShiftState {
  let value: ShiftState;
  try {
    value = JSON.parse(text) as ShiftState;
  } catch (error) {
    throw new InputError(`shift state ${where} is not valid JSON`, { cause: error, hint: 'remove it only if you know the ownership the tree has' });
  }
  if (value?.version !== 1 || typeof value.seq !== 'number' || !value.original || !value.current) {
    throw new InputError(`shift state ${where} is not a version 1 record`, { hint: 'remove it only if you know the ownership the tree has' });
  }
  for (const own of [value.original, value.current, value.previous ?? value.current]) {
    validateIdMap(own.uid, `shift state ${where}`);
    validateIdMap(own.gid, `shift state ${where}`);
  }
  return value;
}

function readStateFile(path: string): ShiftState | undefined {
  try {
    return parseState(readFileSync(path, 'utf8'), path);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * The state file alone, when it still describes the tree at `rootfs`: no
 * process spawned (the marker is not read), for the O(1) checks on the
 * hook's and the shim's paths. A record is tied to its tree (issue 14 #2):
 * it counts only when the root directory is the inode it recorded (number
 * and birth time, lstat) and has an owner the record allows (ownerFits), so
 * a tree unpacked again at the same path is not taken for the shifted one.
 * Records written before trees were identified are checked by owner alone.
 */
export function readStateFast(stateDir: string, rootfs: string): ShiftState | undefined {
  const state = readStateFile(statePaths(stateDir, rootfs).state);
  if (state?.rootfs !== rootfs) return undefined;
  let st;
  try {
    st = lstatSync(rootfs, { bigint: true });
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return undefined;
    throw systemError('cannot stat', rootfs, error);
  }
  return describesTree(state, st) ? state : undefined;
}

/** Whether a record is of the tree whose root directory has this lstat: same inode and birth time when it recorded them, an owner it allows. */
function describesTree(state: ShiftState, st: BigIntStats): boolean {
  if (state.tree && (state.tree.ino !== st.ino.toString() || state.tree.birthNs !== st.birthtimeNs.toString())) return false;
  return ownerFits(state, { uid: Number(st.uid), gid: Number(st.gid) });
}

/** Replaces the state file atomically and durably (mode 0600). SystemError naming it when that fails. */
export function writeStateFile(stateDir: string, state: ShiftState): void {
  const paths = statePaths(stateDir, state.rootfs);
  try {
    mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw systemError('cannot create', paths.dir, error);
  }
  writeFileAtomic(paths.state, `${JSON.stringify(state)}\n`, { mode: 0o600, operation: 'cannot write the shift state' });
}

export function sameOwnership(a: Ownership, b: Ownership): boolean {
  return sameIdMap(a.uid, b.uid) && sameIdMap(a.gid, b.gid);
}

/** The root directory's inode number and birth time at full precision (bigint stat; 0 where the filesystem keeps no birth time). */
export function rootIdentity(root: string): Pick<TreeIdentity, 'ino' | 'birthNs'> {
  const st = lstatSync(root, { bigint: true });
  return { ino: st.ino.toString(), birthNs: st.birthtimeNs.toString() };
}

/**
 * Whether the owner of the root directory is what the record says the
 * tree has: the current mapping's root, or while a shift is pending, the
 * root of any mapping a step moves from or to (the root is chowned last in
 * each step). A side whose mapping does not map container root is not
 * checked. A tree unpacked again over a shifted one is owned by host root
 * again: its record no longer holds.
 */
export function ownerFits(state: ShiftState, owner: { uid: number; gid: number }): boolean {
  const candidates = [state.current, ...(state.pending?.steps ?? []).flatMap((s) => [{ uid: s.uid.from, gid: s.gid.from }, { uid: s.uid.to, gid: s.gid.to }])];
  const fits = (map: IdMap, id: number) => {
    const root = toHost(map, 0);
    return root === undefined || root === id;
  };
  return candidates.some((o) => fits(o.uid, owner.uid) && fits(o.gid, owner.gid));
}

/**
 * Removes the state files (record and journals) of trees that are gone or
 * were replaced (another root inode or birth time, or a root owner the
 * record does not allow), so that stateDir/shift does not fill with
 * records of deleted trees. Records of pending shifts of trees still
 * there, and files that do not parse, are left alone. Returns the rootfs
 * paths pruned.
 */
export function pruneStates(stateDir: string): string[] {
  const dir = join(stateDir, 'shift');
  const pruned: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return pruned;
    throw systemError('cannot list', dir, error);
  }
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    let state: ShiftState;
    try {
      state = parseState(readFileSync(join(dir, name), 'utf8'), name);
    } catch {
      continue;
    }
    if (!treeReplaced(state)) continue;
    const key = name.slice(0, -'.json'.length);
    removeStateFiles(dir, key);
    pruned.push(state.rootfs);
  }
  return pruned;
}

function treeReplaced(state: ShiftState): boolean {
  let st;
  try {
    st = lstatSync(state.rootfs, { bigint: true });
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return true;
    throw systemError('cannot stat', state.rootfs, error);
  }
  if (!st.isDirectory()) return true;
  return !state.pending && !describesTree(state, st);
}

/** The rootfs's real path; it must be an existing directory. */
export function resolveRootfs(rootfs: string, containerId?: string): string {
  if (!isAbsolute(rootfs)) throw new InputError(`rootfs ${rootfs} is not an absolute path`, { containerId, path: rootfs });
  let real: string;
  try {
    real = realpathSync(rootfs);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw new InputError(`rootfs ${rootfs} does not exist`, { containerId, path: rootfs, cause: error });
    throw systemError('cannot resolve the rootfs', rootfs, error, { containerId });
  }
  if (!lstatSync(real).isDirectory()) throw new InputError(`rootfs ${rootfs} is not a directory`, { containerId, path: rootfs });
  return real;
}

/**
 * Whether a tree already has the target ownership, from the state file and
 * the owner of the rootfs directory alone. Also true with no record of ours
 * when the directory is owned as the mapping says: an engine shifted it, or
 * we did and the state file is gone (the rootfs directory is chowned last,
 * so its owner means the whole tree is done).
 */
export function alreadyShifted(root: string, target: Ownership, stateDir: string): boolean {
  const rootOwner = lstatSync(root);
  if (rootOwner.uid !== toHost(target.uid, 0) || rootOwner.gid !== toHost(target.gid, 0)) return false;
  const recorded = readStateFast(stateDir, root);
  return recorded === undefined || (!recorded.pending && sameOwnership(recorded.current, target));
}

/**
 * Why a tree does not have its original owners on disk, or undefined when
 * it has: its root directory is not owned by host root, or the chown engine
 * has a record of it (shifted, or a shift pending). An idmapped mount maps
 * the on-disk ids, so only a tree with its original owners may be idmapped
 * (the shim's route rule, lib/rootfs/shim-rootfs.ts shimRoute, is the same).
 */
export function notOriginalOwners(root: string, stateDir: string): string | undefined {
  const { uid, gid } = lstatSync(root);
  if (uid !== 0 || gid !== 0) return `its root directory is owned by ${uid}:${gid}, not by host root`;
  return readStateFast(stateDir, root) === undefined ? undefined : 'the chown engine has a recorded state for it';
}
