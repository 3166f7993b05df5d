// The one tree walker of oci-userns: visits every inode below a root
// without following symlinks or entering a mount (a mount point is what
// /proc/self/mountinfo lists: reported and not entered). Device numbers do
// not tell mounts: overlayfs with xino off reports a lower layer's device
// for files not yet copied up, and a btrfs subvolume has a device of its
// own without being a mount. Names are walked as bytes (path keys,
// lib/sys/path-key.ts), so a name that is not UTF-8 is visited like any
// other. What to do with each inode is the
// caller's visitor. Memory holds the directories still to read, never the
// list of all paths.
//
// walkTree walks in the calling thread; WalkerPool (walk-pool.ts) in the
// calling thread and worker threads together, with this module's
// dirReader in each.

import fs, { readFileSync, type Stats } from 'node:fs';
import { systemError, type SystemError } from '../errors';
import { parseMountinfo } from './mountinfo';
import { displayPath, fsPath, keyOfBytes, pathBytes } from './path-key';

export type EntryType = 'dir' | 'file' | 'symlink' | 'other';

export interface TreeVisitor {
  /** Every inode below the root, parents before children (the root itself is not visited). */
  visit(path: string, st: Stats, type: EntryType): void;
  /** A mount point met and not entered. */
  skip(path: string): void;
  /** After each batch of directories (a thread's task): send what is pending. */
  end?(): void;
}

/** A failure inside a walk, as plain data (it crosses threads). */
export interface WalkFailure {
  op: string;
  path: string;
  code?: string;
  message: string;
}

export function walkError(failure: WalkFailure): SystemError {
  return systemError(failure.op, displayPath(failure.path), { code: failure.code, message: failure.message });
}

/** The WalkFailure a visitor throws when an operation on `path` failed. */
export function walkFailure(op: string, path: string, error: unknown): WalkFailure {
  const e = error as { code?: string; message?: string } | undefined;
  return { op, path, code: e?.code, message: String(e?.message ?? error) };
}

export const isFailure = (error: unknown): error is WalkFailure => typeof error === 'object' && error !== null && 'op' in error && 'path' in error;

/** Mount points strictly below root, from /proc/self/mountinfo. */
export function mountPointsBelow(root: string, mountinfoText = readFileSync('/proc/self/mountinfo', 'utf8')): Set<string> {
  const prefix = root.endsWith('/') ? root : `${root}/`;
  return new Set(parseMountinfo(mountinfoText).map((m) => m.mountPoint).filter((p) => p.startsWith(prefix)));
}

/** The keys of a directory's entries. Names are read as strings, and again as bytes only when one is not UTF-8. */
export function childKeys(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  if (dir.charCodeAt(0) !== 0) {
    const names = fs.readdirSync(dir);
    if (!names.some((name) => name.includes('\uFFFD'))) return names.map((name) => prefix + name);
  }
  const prefixBytes = pathBytes(prefix);
  return fs.readdirSync(fsPath(dir), { encoding: 'buffer' }).map((name) => keyOfBytes(Buffer.concat([prefixBytes, name])));
}

export function entryType(st: Stats): EntryType {
  return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
}

function statOf(path: string): Stats {
  let st: Stats | undefined;
  try {
    st = fs.lstatSync(fsPath(path), { throwIfNoEntry: false });
  } catch (error) {
    throw walkFailure('cannot stat', path, error);
  }
  if (st === undefined) throw walkFailure('cannot stat (removed during the walk)', path, { code: 'ENOENT' });
  return st;
}

export interface ReaderOptions {
  /** Mount points below the root (keys, from mountPointsBelow): skipped. */
  mountPoints: Iterable<string>;
  visitor: TreeVisitor;
}

/**
 * Reads directories: visits their entries and returns the subdirectories to
 * read next. Throws a WalkFailure.
 */
export function dirReader(options: ReaderOptions): (dirs: readonly string[]) => string[] {
  const mounts = new Set(options.mountPoints);
  const { visitor } = options;
  return (dirs) => {
    const subdirs: string[] = [];
    for (const dir of dirs) {
      let paths: string[];
      try {
        paths = childKeys(dir);
      } catch (error) {
        throw walkFailure('cannot read directory', dir, error);
      }
      for (const path of paths) {
        if (mounts.has(path)) {
          visitor.skip(path);
          continue;
        }
        const st = statOf(path);
        const type = entryType(st);
        if (type === 'dir') subdirs.push(path);
        visitor.visit(path, st, type);
      }
    }
    return subdirs;
  };
}

/** Walks everything below root in the calling thread, depth first. Throws a SystemError naming the path that failed. */
export function walkTree(root: string, visitor: TreeVisitor, mountPoints: Iterable<string> = mountPointsBelow(root)): void {
  try {
    const read = dirReader({ mountPoints, visitor });
    const pending = [root];
    while (pending.length > 0) pending.push(...read([pending.pop()!]));
    visitor.end?.();
  } catch (error) {
    throw isFailure(error) ? walkError(error) : error;
  }
}
