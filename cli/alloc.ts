// `oci-userns alloc <id>`: a free host id range for a container from the
// subordinate id pool, over lib/ranges/ranges.ts.

import type { CommandModule } from 'yargs';
import { sizeForHighestId } from '../lib/ranges/allocator';
import { InputError } from '../lib/errors';
import { allocateRange } from '../lib/ranges/ranges';
import { highestIds } from '../lib/rootfs/owners';
import { loadConfig, openLogger, print, printJson, type GlobalArgs } from './context';
import { describeEntry } from './range-text';

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

export default alloc as unknown as CommandModule<GlobalArgs, GlobalArgs>;
