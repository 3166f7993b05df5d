// Walks a tree without following symlinks or leaving its filesystem, and
// hands out its inodes in batches with their lstat data. Memory holds one
// batch, the stack of directories still to read, and the set of hard-linked
// inodes seen (so each is handed out once), never the list of all paths.

import { lstatSync, readdirSync, readFileSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, systemError } from './errors';
import { parseMountinfo } from './mountinfo';

export type EntryType = 'dir' | 'file' | 'symlink' | 'other';

export interface Entry {
  path: string;
  type: EntryType;
  uid: number;
  gid: number;
  mode: number;
  ino: number;
}

export interface WalkOptions {
  root: string;
  /** Mount points inside root (absolute paths); their subtrees are skipped. */
  mountPoints: ReadonlySet<string>;
  batchSize?: number;
  onSkippedMount?: (path: string) => void;
}

/** Mount points strictly below root, from /proc/self/mountinfo. */
export function mountPointsBelow(root: string, mountinfoText = readFileSync('/proc/self/mountinfo', 'utf8')): Set<string> {
  const prefix = root.endsWith('/') ? root : `${root}/`;
  return new Set(parseMountinfo(mountinfoText).map((m) => m.mountPoint).filter((p) => p.startsWith(prefix)));
}

function typeOf(st: Stats): EntryType {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

function lstat(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (error) {
    // Names that are not valid UTF-8 come back from readdir altered and cannot be found again.
    if (errnoCode(error) === 'ENOENT') throw systemError('cannot stat (removed during the walk, or a name that is not valid UTF-8)', path, error);
    throw systemError('cannot stat', path, error);
  }
}

/**
 * Depth first, directory entries in readdir order: the same order on every
 * run over an unchanged tree. The root comes last, in a batch of its own, so
 * that its owner changes only once everything below it is done.
 */
export async function* walkBatches(options: WalkOptions): AsyncGenerator<Entry[]> {
  const batchSize = options.batchSize ?? 8192;
  const rootStat = lstat(options.root)!;
  const dev = rootStat.dev;
  const linked = new Set<number>();
  const dirs: string[] = [];
  let batch: Entry[] = [];
  const add = (path: string, st: Stats) => {
    const type = typeOf(st);
    if (type !== 'dir' && st.nlink > 1) {
      if (linked.has(st.ino)) return;
      linked.add(st.ino);
    }
    batch.push({ path, type, uid: st.uid, gid: st.gid, mode: st.mode, ino: st.ino });
    if (type === 'dir') dirs.push(path);
  };
  dirs.push(options.root);
  while (dirs.length > 0) {
    const dir = dirs.pop()!;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (error) {
      throw systemError('cannot read directory', dir, error);
    }
    for (const name of names) {
      const path = join(dir, name);
      const st = lstat(path)!;
      if (st.dev !== dev || options.mountPoints.has(path)) {
        options.onSkippedMount?.(path);
        continue;
      }
      add(path, st);
    }
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
  yield [{ path: options.root, type: 'dir', uid: rootStat.uid, gid: rootStat.gid, mode: rootStat.mode, ino: rootStat.ino }];
}
