// `oci-userns release <id>`: gives a container's host id range back to the
// pool, over lib/ranges/ranges.ts.

import type { CommandModule } from 'yargs';
import { InputError } from '../lib/errors';
import { releaseContainer } from '../lib/ranges/ranges';
import { registryPath } from '../lib/ranges/registry';
import { loadConfig, openLogger, print, printJson, type GlobalArgs } from './context';
import { describeEntry } from './range-text';

interface ReleaseArgs extends GlobalArgs {
  id: string;
}

const release: CommandModule<GlobalArgs, ReleaseArgs> = {
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

export default release as unknown as CommandModule<GlobalArgs, GlobalArgs>;
