// What the shim keeps about a container it prepared, in a root-only
// directory STATEDIR/shim/ID (0700), from create until the container is
// gone: the work a poststop hook would do for it is the shim's (the spec
// it gave the container is not in the bundle any more, bundle-spec.ts),
// and the front (bin/oci-userns-runtime) sends `delete ID` to the shim
// when this directory exists.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/config';
import { pathHash } from '../sys/path-key';
import { errnoCode, isUsernsError, systemError } from '../errors';
import type { Logger } from '../log/logger';
import { podRole } from '../oci/pod';
import { rootfsPath, type Spec } from '../oci/spec';
import { releaseContainer } from '../ranges/ranges';
import { forgetState } from '../shift/state';

const RECORD = 'prepared.json';

export interface PreparedRecord {
  /** A CRI pod's container or sandbox: the engine removes its rootfs with it (kubelet never starts an id again), so its shift record goes too. */
  forgetShift?: string;
}

/**
 * The container's directory. runc's ids are [A-Za-z0-9_+.-] (the front
 * looks those up by name); any other id is named by its SHA-256, which the
 * front never finds, and sends to the shim anyway.
 */
export function preparedDir(stateDir: string, id: string): string {
  const name = /^[A-Za-z0-9_.+-]+$/.test(id) && id !== '.' && id !== '..' ? id : pathHash(id);
  return join(stateDir, 'shim', name);
}

/** Makes the container's directory (0700, the state dir's owner: root) and writes its record. Throws SystemError. */
export function recordPrepared(stateDir: string, id: string, record: PreparedRecord): string {
  const dir = preparedDir(stateDir, id);
  try {
    mkdirSync(join(stateDir, 'shim'), { recursive: true, mode: 0o700 });
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if (errnoCode(error) !== 'EEXIST') throw systemError('cannot create', dir, error, { containerId: id });
  }
  try {
    writeFileSync(join(dir, RECORD), JSON.stringify(record), { mode: 0o600 });
  } catch (error) {
    throw systemError('cannot write', join(dir, RECORD), error, { containerId: id });
  }
  return dir;
}

/** Drops the container's directory: a create that failed before the runtime ran. */
export function forgetPrepared(stateDir: string, id: string): void {
  rmSync(preparedDir(stateDir, id), { recursive: true, force: true });
}

/** What the shim must do once the container is gone: a CRI pod's rootfs goes with it, and so must its shift record. */
export function preparedRecord(spec: Spec, bundle: string, config: Pick<Config, 'shift'>): PreparedRecord {
  const rootfs = podRole(spec) !== undefined && config.shift.mode !== 'never' ? rootfsPath(spec, bundle) : undefined;
  return rootfs === undefined ? {} : { forgetShift: rootfs };
}

function readRecord(dir: string): PreparedRecord | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, RECORD), 'utf8')) as PreparedRecord;
  } catch {
    // No record (a container the shim did not prepare) or one cut short by a crash: nothing to forget.
    return undefined;
  }
}

/**
 * The container is gone (its run ended, its create failed, it was
 * deleted): releases its range, drops a pod container's shift record and
 * the container's directory. Returns warnings (a range not released)
 * rather than throwing UsernsErrors: the runtime's status stands.
 */
export async function containerGone(opts: { stateDir: string; id: string; logger: Logger }): Promise<string[]> {
  const { stateDir, id, logger } = opts;
  const warnings: string[] = [];
  try {
    await releaseContainer({ stateDir, id, logger });
  } catch (error) {
    if (!isUsernsError(error)) throw error;
    logger.error(`the range of container ${id} was not released: ${error.message}`, { containerId: id });
    warnings.push(`the range of container ${id} was not released: ${error.message}`);
  }
  const record = readRecord(preparedDir(stateDir, id));
  if (record?.forgetShift !== undefined && forgetState(stateDir, record.forgetShift)) logger.info('dropped the shift record of a pod container\'s rootfs', { containerId: id, rootfs: record.forgetShift });
  forgetPrepared(stateDir, id);
  return warnings;
}
