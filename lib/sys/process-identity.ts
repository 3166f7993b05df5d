// Telling whether a process recorded earlier is still the same process: a
// pid alone can be reused, so a process is known by its pid and its start
// time (field 22 of /proc/PID/stat, clock ticks since boot), and a record
// from an earlier boot names no live process at all.

import { readFileSync } from 'node:fs';
import { errnoCode, systemError } from '../errors';

export interface ProcessIdentity {
  pid: number;
  /** Start time in clock ticks since boot. */
  start: number;
}

/**
 * The start time of a running process, or undefined when there is no such
 * process or it has exited and is only waiting to be reaped (a zombie).
 */
export function processStart(pid: number, procRoot = '/proc'): number | undefined {
  const path = `${procRoot}/${pid}/stat`;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ESRCH') return undefined;
    throw systemError('cannot read', path, error);
  }
  // The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const start = Number(fields[19]);
  if (state === 'Z' || state === 'X' || !Number.isSafeInteger(start)) return undefined;
  return start;
}

/** True while the process with this pid and start time runs; without a start time, while the pid does. */
export function isRunning(pid: number, start: number | undefined, procRoot = '/proc'): boolean {
  const actual = processStart(pid, procRoot);
  return actual !== undefined && (start === undefined || actual === start);
}

let self: ProcessIdentity | undefined;

export function selfIdentity(): ProcessIdentity {
  if (self) return self;
  const start = processStart(process.pid);
  if (start === undefined) throw systemError('cannot read', `/proc/${process.pid}/stat`, new Error('no start time'));
  self = { pid: process.pid, start };
  return self;
}

let boot: string | undefined;

/** This boot's random id (/proc/sys/kernel/random/boot_id), without dashes. */
export function bootId(): string {
  const path = '/proc/sys/kernel/random/boot_id';
  try {
    boot ??= readFileSync(path, 'utf8').trim().replace(/-/g, '');
  } catch (error) {
    throw systemError('cannot read', path, error);
  }
  return boot;
}
