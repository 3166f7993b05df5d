// `oci-userns alloc | release | ranges | gc`: the registry of host id
// ranges from the command line, over lib/ranges/ranges.ts.

import type { CommandModule } from 'yargs';
import { sizeForHighestId } from '../lib/ranges/allocator';
import { InputError } from '../lib/errors';
import { formatIdMap, type IdMapping } from '../lib/oci/idmap';
import { allocateRange, gcRanges, listRanges, releaseContainer, repairRegistry, type RangeEntry } from '../lib/ranges/ranges';
import { registryPath } from '../lib/ranges/registry';
import { highestIds } from '../lib/rootfs/owners';
import { DEFAULT_RUNTIME_ROOTS } from '../lib/ranges/runtime-state';
import { loadConfig, openLogger, print, printJson, type GlobalArgs } from './context';

const hostRange = (map: readonly IdMapping[]) => map.map((m) => `${m.hostID}-${m.hostID + m.size - 1}`).join(',');

/** The `ranges` table: one row per container, host ids as first-last. */
export function formatRangesTable(entries: readonly RangeEntry[]): string {
  if (entries.length === 0) return 'no ranges registered';
  const rows = [['ID', 'UIDS', 'GIDS', 'SINCE', 'SOURCE'], ...entries.map((e) => [e.id, hostRange(e.uidMappings), hostRange(e.gidMappings), e.since, e.source])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

const describeEntry = (e: RangeEntry) => `${e.id}: uids ${formatIdMap(e.uidMappings)}, gids ${formatIdMap(e.gidMappings)}`;

interface AllocArgs extends GlobalArgs {
  id: string;
  size?: string;
  rootfs?: string;
  name?: string;
}

/** --size N, or auto (from --rootfs); --rootfs alone means auto. */
export async function requestedSize(size: string | undefined, rootfs: string | undefined, blockSize: number): Promise<number | undefined> {
  if (size !== undefined && size !== 'auto') {
    if (!/^\d+$/.test(size)) throw new InputError(`--size must be a number of ids or 'auto', got '${size}'`);
    if (rootfs !== undefined) throw new InputError('give --size N or --rootfs DIR (which means --size auto), not both');
    return Number(size);
  }
  if (size === 'auto' && rootfs === undefined) throw new InputError('--size auto needs --rootfs DIR, the tree whose owners the range must map');
  if (rootfs === undefined) return undefined;
  const ids = await highestIds(rootfs);
  if (ids.rootUid !== 0 || ids.rootGid !== 0) {
    throw new InputError(`rootfs ${rootfs} is owned by ${ids.rootUid}:${ids.rootGid}, not 0:0, so it looks shifted already and its owners are host ids`, {
      path: rootfs,
      hint: 'give the size with --size N',
    });
  }
  return sizeForHighestId(Math.max(ids.highestUid, ids.highestGid), blockSize);
}

const alloc: CommandModule<GlobalArgs, AllocArgs> = {
  command: 'alloc <id>',
  describe: 'Allocate a free host uid/gid range for a container from the subordinate id pool (the same range again for the same id)',
  builder: (y) =>
    y
      .positional('id', { type: 'string', demandOption: true, describe: 'container id' })
      .option('size', { type: 'string', describe: "ids needed, rounded up to the block size, or 'auto' with --rootfs (default: one block)" })
      .option('rootfs', { type: 'string', describe: 'size the range for the highest uid/gid owning a file in this tree' })
      .option('name', { type: 'string', describe: 'container name the preferred block is derived from (default: the id)' }) as never,
  handler: async (args) => {
    const config = await loadConfig(args);
    const logger = await openLogger(config, { command: 'alloc' });
    const size = await requestedSize(args.size, args.rootfs, config.pool.blockSize);
    const entry = await allocateRange({ stateDir: config.stateDir, pool: config.pool, id: args.id, name: args.name, size, source: 'cli', logger });
    if (args.json) printJson(entry);
    else print(describeEntry(entry));
  },
};

interface IdArgs extends GlobalArgs {
  id: string;
}

const release: CommandModule<GlobalArgs, IdArgs> = {
  command: 'release <id>',
  describe: "Release a container's host id range",
  builder: (y) => y.positional('id', { type: 'string', demandOption: true, describe: 'container id' }) as never,
  handler: async (args) => {
    const config = await loadConfig(args);
    const logger = await openLogger(config, { command: 'release' });
    const entry = await releaseContainer({ stateDir: config.stateDir, id: args.id, logger });
    if (!entry) throw new InputError(`container ${args.id} has no range in ${registryPath(config.stateDir)}`, { containerId: args.id, hint: 'oci-userns ranges lists them' });
    if (args.json) printJson(entry);
    else print(`released ${describeEntry(entry)}`);
  },
};

const ranges: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'ranges',
  describe: 'List the registered host id ranges: id, uids, gids, since, source',
  handler: async (args) => {
    const config = await loadConfig(args);
    const entries = await listRanges({ stateDir: config.stateDir });
    if (args.json) printJson(entries);
    else print(formatRangesTable(entries));
  },
};

interface GcArgs extends GlobalArgs {
  repair?: boolean;
  'runtime-root'?: string[];
}

const gc: CommandModule<GlobalArgs, GcArgs> = {
  command: 'gc',
  describe: 'Drop the ranges of containers that no longer exist; with --repair, rebuild a corrupt registry from the running containers',
  builder: (y) =>
    y
      .option('repair', { type: 'boolean', describe: 'move the registry aside (kept) and rebuild it from the running containers' })
      .option('runtime-root', { type: 'string', array: true, describe: `runtime state directory to look for containers in (default: ${DEFAULT_RUNTIME_ROOTS.join(', ')})` }) as never,
  handler: async (args) => {
    const config = await loadConfig(args);
    const logger = await openLogger(config, { command: 'gc' });
    const runtimeRoots = args['runtime-root'];
    if (args.repair) {
      const result = await repairRegistry({ stateDir: config.stateDir, runtimeRoots, logger });
      if (args.json) printJson(result);
      else print(`${result.movedTo ? `moved the old registry to ${result.movedTo}; ` : ''}rebuilt ${registryPath(config.stateDir)} with ${result.entries.length} running container${result.entries.length === 1 ? '' : 's'}`);
      return;
    }
    const dropped = await gcRanges({ stateDir: config.stateDir, runtimeRoots, logger });
    if (args.json) printJson(dropped);
    else print(dropped.length === 0 ? 'nothing to drop' : dropped.map((e) => `dropped ${describeEntry(e)}`).join('\n'));
  },
};

// One type for the array, so the CLI can register the four with one .command([...]) call.
export default [alloc, release, ranges, gc] as unknown as Array<CommandModule<GlobalArgs, GlobalArgs>>;
