// What a shift records so that a killed run can be finished and a tree can
// be shifted back: the state (original, current and pending mappings) in a
// file under stateDir and as an xattr on the rootfs directory (it travels
// with the tree), and a journal of what chown destroys (file capabilities,
// setuid/setgid bits), written and synced before the chown that destroys it.

import { closeSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, RefusedError, systemError } from '../errors';
import { parseState, readStateFast, statePaths, type ShiftState } from './state';
import { readXattr, writeXattr } from './xattr';

export type { Ownership, ShiftState } from './state';
export { readStateFast, statePaths } from './state';

export const MARKER_XATTR = 'trusted.oci-userns.shift';

/** The newest of the state file and the rootfs marker xattr. */
export async function readState(stateDir: string, rootfs: string): Promise<ShiftState | undefined> {
  const fromFile = readStateFast(stateDir, rootfs);
  const raw = await readXattr(rootfs, MARKER_XATTR);
  const fromXattr = raw ? parseState(raw.toString('utf8'), `xattr ${MARKER_XATTR} of ${rootfs}`) : undefined;
  if (!fromFile) return fromXattr && { ...fromXattr, rootfs };
  if (!fromXattr) return fromFile;
  return fromXattr.seq > fromFile.seq ? { ...fromXattr, rootfs } : fromFile;
}

function writeFileDurably(path: string, text: string): void {
  const tmp = `${path}.tmp${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dirFd = openSync(join(path, '..'), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** Records the state in both places, file first. */
export async function writeState(stateDir: string, state: ShiftState): Promise<void> {
  const paths = statePaths(stateDir, state.rootfs);
  const text = JSON.stringify(state);
  try {
    mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
    writeFileDurably(paths.state, `${text}\n`);
  } catch (error) {
    throw systemError('cannot write the shift state', paths.state, error);
  }
  await writeXattr(state.rootfs, MARKER_XATTR, Buffer.from(text));
}

/** A destroyed attribute saved before the chown: capability value (hex) or mode bits to restore. */
export interface JournalRecord {
  path: string;
  cap?: string;
  mode?: number;
}

/** Append-only journal for one step; every append is on disk before it returns. */
export class Journal {
  private constructor(private readonly fd: number, readonly path: string) {}

  static create(path: string, step: number): Journal {
    try {
      const fd = openSync(path, 'w', 0o600);
      writeSync(fd, `${JSON.stringify({ step })}\n`);
      fdatasyncSync(fd);
      return new Journal(fd, path);
    } catch (error) {
      throw systemError('cannot create the shift journal', path, error);
    }
  }

  /** Reopens a journal to go on with the same step; returns its records. */
  static resume(path: string, step: number): { journal: Journal; records: Map<string, JournalRecord> } {
    const records = new Map<string, JournalRecord>();
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw systemError('cannot read the shift journal', path, error);
    }
    const lines = text.split('\n');
    const header = lines[0] ? (JSON.parse(lines[0]) as { step: number }) : undefined;
    if (header?.step !== step) return { journal: Journal.create(path, step), records };
    // The last line may be cut short by a kill during its write; it was never synced, so its chown never ran.
    for (const line of lines.slice(1)) {
      if (line === '') continue;
      try {
        const record = JSON.parse(line) as JournalRecord;
        records.set(record.path, { ...records.get(record.path), ...record });
      } catch {
        break;
      }
    }
    try {
      const fd = openSync(path, 'a', 0o600);
      return { journal: new Journal(fd, path), records };
    } catch (error) {
      throw systemError('cannot open the shift journal', path, error);
    }
  }

  append(records: readonly JournalRecord[]): void {
    if (records.length === 0) return;
    try {
      writeSync(this.fd, records.map((r) => `${JSON.stringify(r)}\n`).join(''));
      fdatasyncSync(this.fd);
    } catch (error) {
      throw systemError('cannot write the shift journal', this.path, error);
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  remove(): void {
    this.close();
    rmSync(this.path, { force: true });
  }
}

/** An exclusive lock per rootfs, so two containers sharing one rootfs do not shift it at once. */
export function acquireLock(lockPath: string, rootfs: string): () => void {
  mkdirSync(join(lockPath, '..'), { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lockPath, { force: true });
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw systemError('cannot create the shift lock', lockPath, error);
      const owner = Number(readFileSync(lockPath, 'utf8'));
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && processAlive(owner)) {
        throw new RefusedError(`${rootfs} is being shifted by process ${owner}`, { path: rootfs, hint: 'wait for it to finish, then retry' });
      }
      rmSync(lockPath, { force: true });
    }
  }
  throw new RefusedError(`cannot take the shift lock ${lockPath}`, { path: rootfs, hint: 'retry' });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoCode(error) === 'EPERM';
  }
}
