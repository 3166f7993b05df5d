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

import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errnoCode, HostError, systemError } from './errors';
import type { Logger } from './logger';
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
  release(): Promise<void>;
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

async function holderName(): Promise<string> {
  const self = await selfIdentity();
  return `${self.pid}.${self.start}.${await bootId()}.${randomBytes(8).toString('hex')}`;
}

async function isHolderAlive(holder: Holder): Promise<boolean> {
  return holder.boot === (await bootId()) && isRunning(holder.pid, holder.start);
}

const stagingPrefix = (path: string) => `.${basename(path)}.`;

/** Removes staging directories of processes that died before renaming theirs into place. */
export async function sweepStaging(path: string, logger?: Logger): Promise<void> {
  const parent = dirname(path);
  const prefix = stagingPrefix(path);
  for (const name of await fs.readdir(parent)) {
    if (!name.startsWith(prefix)) continue;
    const holder = parseHolderName(name.slice(prefix.length));
    if (!holder || (await isHolderAlive(holder))) continue;
    await fs.rm(join(parent, name), { recursive: true, force: true });
    logger?.debug('removed the staging directory of a dead process', { path: join(parent, name) });
  }
}

/** Breaks the lock of dead holders; returns the live holders. */
async function breakDeadHolders(path: string, logger?: Logger): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(path);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return [];
    if (errnoCode(error) === 'ENOTDIR') throw new HostError(`lock ${path} is not a directory`, { path, hint: `remove it: rm ${path}` });
    throw systemError('cannot list', path, error);
  }
  const alive: string[] = [];
  let broke = false;
  for (const name of names) {
    const holder = parseHolderName(name);
    if (!holder || (await isHolderAlive(holder))) {
      alive.push(name);
      continue;
    }
    await fs.unlink(join(path, name)).catch((error) => {
      if (errnoCode(error) !== 'ENOENT') throw systemError('cannot remove', join(path, name), error);
    });
    logger?.warn(`broke the lock ${path} of process ${holder.pid}, which is gone`, { path });
    broke = true;
  }
  if (alive.length === 0) await removeIfEmpty(path);
  if (broke) await sweepStaging(path, logger);
  return alive;
}

async function removeIfEmpty(path: string): Promise<void> {
  try {
    await fs.rmdir(path);
  } catch (error) {
    const code = errnoCode(error);
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw systemError('cannot remove', path, error);
  }
}

export async function acquireLock(opts: LockOptions): Promise<HeldLock> {
  const { path } = opts;
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  const name = await holderName();
  const staging = join(dirname(path), `${stagingPrefix(path)}${name}`);
  try {
    await fs.mkdir(staging, { mode: 0o700 });
    await (await fs.open(join(staging, name), 'wx', 0o600)).close();
  } catch (error) {
    throw systemError('cannot create', staging, error);
  }
  try {
    await waitAndRename(staging, path, deadline, opts);
  } catch (error) {
    await fs.rm(staging, { recursive: true, force: true });
    throw error;
  }
  return { path, release: () => releaseLock(path, name) };
}

async function waitAndRename(staging: string, path: string, deadline: number, opts: LockOptions): Promise<void> {
  let delay = 1;
  let live: string[] = [];
  for (;;) {
    try {
      await fs.rename(staging, path);
      return;
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOTDIR') throw new HostError(`lock ${path} is not a directory`, { path, hint: `remove it: rm ${path}` });
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw systemError('cannot rename a lock into place at', path, error);
    }
    live = await breakDeadHolders(path, opts.logger);
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

async function releaseLock(path: string, name: string): Promise<void> {
  try {
    await fs.unlink(join(path, name));
  } catch (error) {
    throw systemError('cannot release the lock', path, error);
  }
  await removeIfEmpty(path);
}

export async function withLock<T>(opts: LockOptions, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireLock(opts);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
