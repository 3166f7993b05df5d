// Replacing a file so that a crash leaves the old content or the new, never
// half of either: a temp file in the same directory (so rename is atomic),
// written and fsynced, renamed over the original, then the directory
// fsynced so the rename itself is durable. The one implementation of this
// in oci-userns (the registry, the shift state, the shim's config.json).
//
// Synchronous: each step is one short system call, and on the hook's path
// the first asynchronous file operation alone costs milliseconds.

import { closeSync, constants, fchmodSync, fchownSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { errnoCode, systemError, type ErrorContext } from '../errors';

export interface AtomicWriteOptions {
  /**
   * 'replace': the file must exist, and keeps its mode and owner (an engine
   * may read config.json as another user). 'create-or-replace' (default):
   * the file gets `mode` and the writer's owner.
   */
  existing?: 'replace' | 'create-or-replace';
  /** Mode of the written file under 'create-or-replace'. Default 0o600. */
  mode?: number;
  /** Start of the error message, e.g. 'cannot write the registry'. Default 'cannot replace'. */
  operation?: string;
  context?: ErrorContext;
  /**
   * false: still atomic, but not fsynced (neither the data nor the rename),
   * for a file whose loss in a crash a durable copy elsewhere repairs (the
   * container's spec lent in config.json: lib/shim/bundle-spec.ts). Default true.
   */
  durable?: boolean;
}

const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

// O_EXCL so a planted file or link is never written through; a temp file
// left by a killed process that had our pid is ours to remove.
function openTemp(temp: string, mode: number): number {
  try {
    return openSync(temp, CREATE, mode);
  } catch (error) {
    if (errnoCode(error) !== 'EEXIST') throw error;
    unlinkSync(temp);
    return openSync(temp, CREATE, mode);
  }
}

function writeAll(fd: number, data: Buffer): void {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done);
}

/**
 * Replaces `path` with `data` atomically and durably. Throws a SystemError
 * naming `path` (errno code in the message); the temp file
 * (`.NAME.oci-userns-PID.tmp` beside it) is removed when anything fails.
 */
export function writeFileAtomic(path: string, data: string | Buffer, options: AtomicWriteOptions = {}): void {
  const dir = dirname(path);
  const operation = options.operation ?? 'cannot replace';
  let original: Stats | undefined;
  if (options.existing === 'replace') {
    try {
      original = statSync(path);
    } catch (error) {
      throw systemError('cannot stat', path, error, options.context);
    }
  }
  const mode = original ? original.mode & 0o7777 : (options.mode ?? 0o600);
  const temp = join(dir, `.${basename(path)}.oci-userns-${process.pid}.tmp`);
  let created = false;
  try {
    const fd = openTemp(temp, mode);
    created = true;
    try {
      writeAll(fd, typeof data === 'string' ? Buffer.from(data) : data);
      if (original) fchownSync(fd, original.uid, original.gid);
      // After the chown, which clears setuid/setgid bits, and past the umask.
      fchmodSync(fd, mode);
      if (options.durable !== false) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
    created = false;
    if (options.durable === false) return;
    const dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch (error) {
    if (created) removeTemp(temp);
    throw systemError(operation, path, error, options.context);
  }
}

function removeTemp(temp: string): void {
  try {
    unlinkSync(temp);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw systemError('cannot remove the temp file', temp, error);
  }
}

/** writeFileAtomic of an existing file, keeping its mode and owner. */
export async function replaceFileAtomic(path: string, text: string, context: ErrorContext = {}, options: Pick<AtomicWriteOptions, 'durable'> = {}): Promise<void> {
  writeFileAtomic(path, text, { existing: 'replace', context, ...options });
}
