// `oci-userns doctor [--json] [--hooks-dir DIR]`: checks this host and
// prints one pass / warn / fail line per check with the fix; fails (exit 4)
// when any check fails.

import { existsSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { DEFAULTS, type Config } from '../lib/config/config';
import { configPath, loadConfig } from '../lib/config/config-file';
import { formatChecks, runChecks } from '../lib/doctor/doctor';
import { DEFAULT_HOOKS_DIRS, type ConfigFacts } from '../lib/doctor/facts';
import { findHooksDir, probeHost } from '../lib/doctor/probe';
import { HostError, isUsernsError } from '../lib/errors';
import { print, printJson, type GlobalArgs } from './context';

interface DoctorArgs extends GlobalArgs {
  'hooks-dir'?: string;
}

/** An unusable config file is a finding, not a reason to stop: the other checks run on the defaults. */
async function configFacts(args: GlobalArgs): Promise<{ config: Config; facts: ConfigFacts }> {
  const { path, explicit } = configPath({ path: args.config, env: process.env });
  const exists = existsSync(path);
  try {
    return { config: await loadConfig({ path: args.config, env: process.env }), facts: { path, explicit, exists } };
  } catch (error) {
    if (!isUsernsError(error)) throw error;
    return { config: DEFAULTS, facts: { path, explicit, exists, problem: error.message } };
  }
}

const doctor: CommandModule<GlobalArgs, DoctorArgs> = {
  command: 'doctor',
  describe: 'Check that this host can run systemd containers in user namespaces, with the fix for each problem',
  builder: (y) =>
    y.option('hooks-dir', {
      type: 'string',
      describe: `hooks.d folder to check (default: the first of ${DEFAULT_HOOKS_DIRS.join(', ')} that holds oci-userns files)`,
    }) as never,
  handler: async (args) => {
    const { config, facts } = await configFacts(args);
    const hooksDir = args['hooks-dir'] ?? (await findHooksDir('/', DEFAULT_HOOKS_DIRS));
    const checks = runChecks(await probeHost({ root: '/', config, configFacts: facts, hooksDir }));
    if (args.json) printJson(checks);
    else print(formatChecks(checks));
    const failed = checks.filter((c) => c.status === 'fail');
    if (failed.length > 0) {
      throw new HostError(`${failed.length} check${failed.length > 1 ? 's' : ''} failed: ${failed.map((c) => c.name).join(', ')}`);
    }
  },
};

export default [doctor];
