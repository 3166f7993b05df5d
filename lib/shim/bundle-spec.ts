// The caller's config.json stays the caller's (issue 16, 3). runc 1.1 reads
// the spec only from BUNDLE/config.json (no --config), and our createRuntime
// hook reads it there too, so the shim lends the file: under a lock on the
// bundle it puts the container's spec there, and as soon as the hook has
// read it (the hook records the container's pid in the registry) or the
// runtime has ended, it puts the caller's bytes back. A second container
// from the same bundle waits for the lock and starts from the caller's
// spec with a range of its own. A private bundle per container was the
// other way: runc then reports that directory as the bundle (`runc state`,
// `runc list`, the hooks' state), which engines and runc's own tests read.
//
// The caller's bytes are also kept in STATEDIR/lent/KEY.json while lent,
// so a shim killed in between leaves nothing that the next create from
// that bundle does not put right first.

import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { pathHash } from '../sys/path-key';
import { errnoCode, systemError } from '../errors';
import type { Logger } from '../log/logger';
import { listRanges } from '../ranges/ranges';
import { replaceFileAtomic, writeFileAtomic } from '../sys/atomic-file';
import { acquireLock, type HeldLock } from '../sys/lock';

/** How long a create waits for another create from the same bundle to hand the file back: the hook's own timeout. */
const LOCK_TIMEOUT_MS = 120_000;
const POLL_MS = 10;

export interface BundleLease {
  /** The caller's bytes of config.json, as read under the lock. */
  original: Buffer;
  /** Puts `text` (the container's spec) in place of the caller's file until `giveBack`. */
  lend(text: string, containerId?: string): Promise<void>;
  /** Puts the caller's bytes back (when lent) and lets the next create from this bundle go. Idempotent. */
  giveBack(): Promise<void>;
}

/**
 * Locks the bundle's spec file `specPath` (lock STATEDIR/lent/KEY.lock,
 * KEY the SHA-256 of the path), first putting back what an earlier shim
 * killed while lending left there, and reads the caller's bytes.
 * Throws HostError when another create holds the bundle for over 120 s.
 */
export async function leaseBundleSpec(opts: { specPath: string; stateDir: string; logger: Logger; read: () => Buffer }): Promise<BundleLease> {
  const dir = join(opts.stateDir, 'lent');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = pathHash(opts.specPath);
  const saved = join(dir, `${key}.json`);
  const lock: HeldLock = await acquireLock({ path: join(dir, `${key}.lock`), timeoutMs: LOCK_TIMEOUT_MS, logger: opts.logger });
  let lent = false;
  let released = false;
  const putBack = async (bytes: Buffer) => {
    await replaceFileAtomic(opts.specPath, bytes.toString('utf8'));
    rmSync(saved, { force: true });
  };
  try {
    const left = readIfExists(saved);
    if (left !== undefined) {
      opts.logger.warn('config.json was left lent by a shim that did not finish: put the caller\'s spec back', { path: opts.specPath });
      await putBack(left);
    }
  } catch (error) {
    lock.release();
    throw error;
  }
  let original: Buffer;
  try {
    original = opts.read();
  } catch (error) {
    lock.release();
    throw error;
  }
  return {
    original,
    async lend(text, containerId) {
      // The caller's bytes durably first: a crash may then lose the lent spec, never the caller's.
      writeFileAtomic(saved, original, { mode: 0o600, context: { containerId } });
      lent = true;
      await replaceFileAtomic(opts.specPath, text, { containerId }, { durable: false });
    },
    async giveBack() {
      if (released) return;
      try {
        if (lent) await putBack(original);
        lent = false;
      } finally {
        released = true;
        lock.release();
      }
    },
  };
}

function readIfExists(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw systemError('cannot read', path, error);
  }
}

/**
 * Resolves once the registry shows `containerId` with a pid (our
 * createRuntime hook recorded it, so it has read config.json), or once
 * `stop` resolves (the runtime ended), whichever comes first.
 */
export async function hookHasRead(opts: { stateDir: string; containerId: string; stop: Promise<unknown> }): Promise<void> {
  let stopped = false;
  void opts.stop.finally(() => {
    stopped = true;
  });
  while (!stopped) {
    const entries = await listRanges({ stateDir: opts.stateDir }).catch(() => []);
    if (entries.some((e) => e.id === opts.containerId && e.pid !== undefined)) return;
    await Promise.race([sleep(POLL_MS), opts.stop]);
  }
}
