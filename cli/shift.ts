// `oci-userns shift ROOTFS` and `oci-userns unshift ROOTFS`: shift a rootfs
// to a range by hand (what the hook does before a container starts), with a
// progress line on a terminal, --dry-run and --json.

import { resolve as absolute } from 'node:path';
import type { CommandModule } from 'yargs';
import { InputError } from '../lib/errors';
import { formatIdMap, IDENTITY, parseIdMap, type IdMap } from '../lib/oci/idmap';
import { dryRunShift, shiftTree, unshiftTree, type Progress } from '../lib/shift/shift';
import { refuseRootfsInUseNow } from '../lib/ranges/rootfs-users';
import { readStateFast, resolveRootfs } from '../lib/shift/state';
import { loadConfig, openLogger, print, printJson, type GlobalArgs } from './context';

interface ShiftArgs extends GlobalArgs {
  rootfs: string;
  'uid-map'?: string;
  'gid-map'?: string;
  to?: number;
  size: number;
  'dry-run'?: boolean;
}

interface UnshiftArgs extends GlobalArgs {
  rootfs: string;
}

export function targetMaps(args: Pick<ShiftArgs, 'uid-map' | 'gid-map' | 'to' | 'size'>): { uid: IdMap; gid: IdMap } {
  if (args.to !== undefined) {
    if (args['uid-map'] || args['gid-map']) throw new InputError('give either --to or --uid-map/--gid-map, not both');
    const map = parseIdMap(`0:${args.to}:${args.size}`, '--to/--size');
    return { uid: map, gid: map };
  }
  if (!args['uid-map']) throw new InputError('name the target range with --uid-map C:H:S[,...] (and --gid-map) or --to HOSTID');
  const uid = parseIdMap(args['uid-map'], '--uid-map');
  return { uid, gid: args['gid-map'] ? parseIdMap(args['gid-map'], '--gid-map') : uid };
}

/** A one-line progress display with rate and ETA, drawn only on a terminal and at most 10 times a second. */
function progressLine(expected: number | undefined): ((p: Progress) => void) & { end(): void } {
  const stream = process.stderr;
  const started = performance.now();
  let last = 0;
  let drawn = false;
  const draw = (p: Progress) => {
    const now = performance.now();
    if (now - last < 100) return;
    last = now;
    const seconds = (now - started) / 1000;
    const rate = seconds > 0 ? p.inodes / seconds : 0;
    const width = 30;
    let line = `${p.inodes} inodes, ${p.changed} changed, ${Math.round(rate)}/s`;
    if (expected && expected > 0) {
      const fraction = Math.min(1, p.inodes / expected);
      const eta = rate > 0 ? Math.max(0, (expected - p.inodes) / rate) : 0;
      line = `[${'#'.repeat(Math.round(fraction * width)).padEnd(width)}] ${Math.round(fraction * 100)}% ${line}, ETA ${eta.toFixed(1)}s`;
    }
    stream.write(`\r${line}\x1b[K`);
    drawn = true;
  };
  const end = () => {
    if (drawn) stream.write('\r\x1b[K');
  };
  return Object.assign(stream.isTTY ? draw : () => undefined, { end });
}

const shift: CommandModule<GlobalArgs, ShiftArgs> = {
  command: 'shift <rootfs>',
  describe: 'Shift the ownership of a rootfs (owners, ACLs, file capabilities) to a host range',
  builder: (y) =>
    y
      .positional('rootfs', { type: 'string', demandOption: true, describe: 'rootfs directory' })
      .option('uid-map', { type: 'string', describe: 'target uid mapping C:H:S[,C:H:S...] (as OCI uidMappings)' })
      .option('gid-map', { type: 'string', describe: 'target gid mapping (default: the uid mapping)' })
      .option('to', { type: 'number', describe: 'host id of container root (maps 0:TO:SIZE for uids and gids)' })
      .option('size', { type: 'number', default: 65536, describe: 'range size with --to' })
      .option('dry-run', { type: 'boolean', describe: 'count what would change; change nothing' }) as never,
  handler: async (args) => {
    const target = targetMaps(args);
    const config = await loadConfig(args);
    const logger = await openLogger(config, { command: 'shift' });
    const rootfs = args.rootfs;
    const options = { rootfs, unmapped: config.shift.unmapped, stateDir: config.stateDir, logger };
    if (args['dry-run']) {
      const result = await dryRunShift({ ...options, rootfs: absolute(rootfs), uidMap: target.uid, gidMap: target.gid });
      if (args.json) printJson({ rootfs, dryRun: true, uidMap: target.uid, gidMap: target.gid, ...result });
      else print(`${rootfs}: ${result.changed} of ${result.inodes} inodes would change owner (from ${formatIdMap(result.from.uid)} to ${formatIdMap(target.uid)})${result.unmapped ? `; ${result.unmapped} have ids outside the mapping: ${result.unmappedPaths.join(', ')}` : ''}`);
      return;
    }
    await refuseRootfsInUseNow(config.stateDir, { rootfs: resolveRootfs(absolute(rootfs)), uidMappings: target.uid, gidMappings: target.gid });
    const progress = progressLine(readStateFast(config.stateDir, absolute(rootfs))?.inodes);
    const started = performance.now();
    try {
      const result = await shiftTree({ ...options, rootfs: absolute(rootfs), uidMap: target.uid, gidMap: target.gid, onProgress: progress });
      report(args, rootfs, result, performance.now() - started, `to ${formatIdMap(target.uid)}`);
    } finally {
      progress.end();
    }
  },
};

const unshift: CommandModule<GlobalArgs, UnshiftArgs> = {
  command: 'unshift <rootfs>',
  describe: 'Give a shifted rootfs back the ownership it had before its first shift',
  builder: (y) => y.positional('rootfs', { type: 'string', demandOption: true, describe: 'rootfs directory' }) as never,
  handler: async (args) => {
    const config = await loadConfig(args);
    const logger = await openLogger(config, { command: 'unshift' });
    const rootfs = absolute(args.rootfs);
    await refuseRootfsInUseNow(config.stateDir, { rootfs: resolveRootfs(rootfs), uidMappings: IDENTITY, gidMappings: IDENTITY });
    const progress = progressLine(readStateFast(config.stateDir, rootfs)?.inodes);
    const started = performance.now();
    try {
      const result = await unshiftTree({ rootfs, unmapped: config.shift.unmapped, stateDir: config.stateDir, logger, onProgress: progress });
      report(args, args.rootfs, result, performance.now() - started, 'back to its original ownership');
    } finally {
      progress.end();
    }
  },
};

function report(args: GlobalArgs, rootfs: string, result: { shifted: boolean; inodes: number; changed: number; skippedMounts: string[] }, ms: number, what: string): void {
  if (args.json) {
    printJson({ rootfs, ...result, durationMs: Math.round(ms) });
    return;
  }
  if (!result.shifted) print(`${rootfs}: already shifted ${what}; nothing to do`);
  else print(`${rootfs}: shifted ${what}: ${result.changed} of ${result.inodes} inodes changed in ${(ms / 1000).toFixed(2)} s`);
  for (const path of result.skippedMounts) print(`${rootfs}: skipped mount point ${path}`);
}

export default [shift, unshift] as unknown as Array<CommandModule<GlobalArgs, GlobalArgs>>;
