// `oci-userns gc [--repair]`: drops the ranges of containers that no longer
// exist (and the measures of overlay layers gone, lib/rootfs/owners.ts), or
// rebuilds a corrupt registry, over lib/ranges/ranges.ts.

import type { CommandModule } from 'yargs';
import { gcRanges, repairRegistry } from '../lib/ranges/ranges';
import { pruneLayerMeasures } from '../lib/rootfs/owners';
import { registryPath } from '../lib/ranges/registry';
import { DEFAULT_RUNTIME_ROOTS } from '../lib/ranges/runtime-state';
import { loadConfig, openLogger, print, printJson, type GlobalArgs } from './context';
import { describeEntry } from './range-text';

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
    const measures = pruneLayerMeasures(config.stateDir);
    if (measures > 0) logger.info(`dropped ${measures} measure${measures === 1 ? '' : 's'} of overlay layers gone`, { path: config.stateDir });
    if (args.json) printJson(dropped);
    else print(dropped.length === 0 ? 'nothing to drop' : dropped.map((e) => `dropped ${describeEntry(e)}`).join('\n'));
  },
};

export default gc as unknown as CommandModule<GlobalArgs, GlobalArgs>;
