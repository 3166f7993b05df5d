// An inter-process lock on a directory that outlives a holder killed with
// SIGKILL, without flock(2) (not in Node) and without child processes.
//
// The protocol. The lock is the directory LOCK (e.g. STATEDIR/ranges.lock).
// It is held while LOCK exists and holds a file named for its holder:
// "PID.START.BOOT.NONCE" (pid, its start time from /proc/PID/stat, this
// boot's id, and a random nonce, so no two acquisitions ever share a name).
//
// acquire:
//   1. mkdir STAGING (STATEDIR/.ranges.lock.NAME) and create STAGING/NAME.
//   2. rename(STAGING, LOCK). rename(2) replaces an empty directory and
//      fails on a non-empty one, atomically: on success we hold the lock.
//   3. On ENOTEMPTY/EEXIST, list LOCK. For every holder file whose process
//      is gone (no such pid, another start time, a zombie, another boot):
//      unlink LOCK/HOLDER, then rmdir LOCK. Then retry 2; else wait a few
//      ms (with backoff) and retry, until the timeout.
// release: unlink LOCK/NAME, then rmdir LOCK.
//
// Why it is safe:
//   - A live lock directory is never empty: it arrives full (by rename) and
//     only its holder empties it, on release.
//   - Breaking removes one file by its unique name, so it can only ever
//     remove the file of that dead holder, never of a later live one, even
//     when several waiters break the same stale lock at once or one of them
//     acts on a listing that is out of date (the unlink finds nothing).
//   - rmdir(2) removes only an empty directory, so a breaker (or a releaser)
//     that is late cannot remove a lock someone acquired in the meantime.
//   - An empty LOCK left behind (a holder killed between unlink and rmdir)
//     is simply replaced by the next rename.
//   - A holder killed before step 2 leaves only its STAGING directory, which
//     blocks nobody; breakers sweep the staging directories of dead processes.
// What it assumes: every process using one state directory sees the others'
// pids (one pid namespace) and the directory is on a local filesystem.
//
// The file operations are synchronous: each is one short system call, and
// on the hook's path the first asynchronous one alone costs milliseconds.

import { closeSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, rmSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errnoCode, HostError, systemError } from '../errors';
import type { Logger } from '../log/logger';
import { bootId, isRunning, selfIdentity } from './process-identity';

export interface LockOptions {
  /** The lock directory; its parent must exist. */
  path: string;
  /** How long to wait for a live holder before giving up. Default 10 s. */
  timeoutMs?: number;
  logger?: Logger;
}

export interface HeldLock {
  path: string;
  release(): void;
}

interface Holder {
  pid: number;
  start: number;
  boot: string;
}

export function parseHolderName(name: string): Holder | undefined {
  const match = /^(\d+)\.(\d+)\.([0-9a-f]+)\.[0-9a-f]+$/.exec(name);
  return match ? { pid: Number(match[1]), start: Number(match[2]), boot: match[3]! } : undefined;
}

let acquisitions = 0;

// pid, start time and boot id already name the process; the suffix only
// tells its successive acquisitions apart. (node:crypto would cost the hook
// about 4 ms of start-up for this.)
function holderName(): string {
  const self = selfIdentity();
  acquisitions += 1;
  const suffix = `${acquisitions.toString(16)}${Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0')}`;
  return `${self.pid}.${self.start}.${bootId()}.${suffix}`;
}

function isHolderAlive(holder: Holder): boolean {
  return holder.boot === bootId() && isRunning(holder.pid, holder.start);
}

const stagingPrefix = (path: string) => `.${basename(path)}.`;

/** Removes staging directories of processes that died before renaming theirs into place. */
export function sweepStaging(path: string, logger?: Logger): void {
  const parent = dirname(path);
  const prefix = stagingPrefix(path);
  for (const name of readdirSync(parent)) {
    if (!name.startsWith(prefix)) continue;
    const holder = parseHolderName(name.slice(prefix.length));
    if (!holder || isHolderAlive(holder)) continue;
    rmSync(join(parent, name), { recursive: true, force: true });
    logger?.debug('removed the staging directory of a dead process', { path: join(parent, name) });
  }
}

function notADirectory(path: string): HostError {
  return new HostError(`lock ${path} is not a directory`, { path, hint: `remove it: rm ${path}` });
}

/** Breaks the lock of dead holders; returns the live holders. */
function breakDeadHolders(path: string, logger?: Logger): string[] {
  let names: string[];
  try {
    names = readdirSync(path);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return [];
    if (errnoCode(error) === 'ENOTDIR') throw notADirectory(path);
    throw systemError('cannot list', path, error);
  }
  const alive: string[] = [];
  let broke = false;
  for (const name of names) {
    const holder = parseHolderName(name);
    if (!holder || isHolderAlive(holder)) {
      alive.push(name);
      continue;
    }
    try {
      unlinkSync(join(path, name));
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw systemError('cannot remove', join(path, name), error);
    }
    logger?.warn(`broke the lock ${path} of process ${holder.pid}, which is gone`, { path });
    broke = true;
  }
  if (alive.length === 0) removeIfEmpty(path);
  if (broke) sweepStaging(path, logger);
  return alive;
}

function removeIfEmpty(path: string): void {
  try {
    rmdirSync(path);
  } catch (error) {
    const code = errnoCode(error);
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw systemError('cannot remove', path, error);
  }
}

export async function acquireLock(opts: LockOptions): Promise<HeldLock> {
  const { path } = opts;
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  const name = holderName();
  const staging = join(dirname(path), `${stagingPrefix(path)}${name}`);
  try {
    mkdirSync(staging, { mode: 0o700 });
    closeSync(openSync(join(staging, name), 'wx', 0o600));
  } catch (error) {
    throw systemError('cannot create', staging, error);
  }
  try {
    await waitAndRename(staging, path, deadline, opts);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  return { path, release: () => releaseLock(path, name) };
}

async function waitAndRename(staging: string, path: string, deadline: number, opts: LockOptions): Promise<void> {
  let delay = 1;
  let live: string[] = [];
  for (;;) {
    try {
      renameSync(staging, path);
      return;
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOTDIR') throw notADirectory(path);
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw systemError('cannot rename a lock into place at', path, error);
    }
    live = breakDeadHolders(path, opts.logger);
    if (live.length === 0) continue;
    if (Date.now() >= deadline) break;
    await sleep(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 25);
  }
  const holders = live.map((n) => parseHolderName(n)?.pid ?? `an unknown holder '${n}'`).join(', ');
  throw new HostError(`timed out after ${opts.timeoutMs ?? 10_000} ms waiting for the lock ${path}, held by process ${holders}`, {
    path,
    hint: 'the lock frees itself when its holder exits; if that process hangs, stop it',
  });
}

function releaseLock(path: string, name: string): void {
  try {
    unlinkSync(join(path, name));
  } catch (error) {
    throw systemError('cannot release the lock', path, error);
  }
  removeIfEmpty(path);
}

export async function withLock<T>(opts: LockOptions, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireLock(opts);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
