// Telling whether a process recorded earlier is still the same process: a
// pid alone can be reused, so a process is known by its pid and its start
// time (field 22 of /proc/PID/stat, clock ticks since boot), and a record
// from an earlier boot names no live process at all.

import { promises as fs } from 'node:fs';
import { errnoCode, systemError } from './errors';

export interface ProcessIdentity {
  pid: number;
  /** Start time in clock ticks since boot. */
  start: number;
}

/**
 * The start time of a running process, or undefined when there is no such
 * process or it has exited and is only waiting to be reaped (a zombie).
 */
export async function processStart(pid: number, procRoot = '/proc'): Promise<number | undefined> {
  const path = `${procRoot}/${pid}/stat`;
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
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
export async function isRunning(pid: number, start: number | undefined, procRoot = '/proc'): Promise<boolean> {
  const actual = await processStart(pid, procRoot);
  return actual !== undefined && (start === undefined || actual === start);
}

let self: Promise<ProcessIdentity> | undefined;

export function selfIdentity(): Promise<ProcessIdentity> {
  self ??= processStart(process.pid).then((start) => {
    if (start === undefined) throw systemError('cannot read', `/proc/${process.pid}/stat`, new Error('no start time'));
    return { pid: process.pid, start };
  });
  return self;
}

let boot: Promise<string> | undefined;

/** This boot's random id (/proc/sys/kernel/random/boot_id), without dashes. */
export function bootId(): Promise<string> {
  const path = '/proc/sys/kernel/random/boot_id';
  boot ??= fs.readFile(path, 'utf8').then(
    (text) => text.trim().replace(/-/g, ''),
    (error) => {
      throw systemError('cannot read', path, error);
    },
  );
  return boot;
}
