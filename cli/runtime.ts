// Entry of `oci-userns runtime [runtime args...]` and of the alias
// oci-userns-runtime: the runtime shim. Not a yargs command, because its
// arguments are runc's and crun's (yargs would read --root, --log, -b and
// the like as its own); the executable dispatches here before yargs loads.

import { realpathSync, writeSync } from 'node:fs';
import type { Config } from '../lib/config/config';
import { loadConfig } from '../lib/config/config-file';
import { DEFAULTS } from '../lib/config/config';
import { INTERNAL_EXIT_CODE, isUsernsError } from '../lib/errors';
import { openHookLogger } from '../lib/log/hook-log';
import { nullLogger, type Logger } from '../lib/log/logger';
import { parseRuntimeArgs } from '../lib/shim/args';
import { writeRuntimeLogError } from '../lib/shim/runtime-log';
import { runShimCommand } from '../lib/shim/shim';

export const SHIM_PREFIX = 'oci-userns runtime';
/** Set by bin/oci-userns-runtime to its own path when it hands a call over. */
export const FRONT_ENV = 'OCI_USERNS_FRONT';

export interface ShimDeps {
  config: Config;
  /** The installed oci-userns program, by its real path (the hooks the shim adds run it). */
  hookPath: string;
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Where the shim's own error lines go; the real runtime's stderr is inherited untouched. */
  writeError?: (line: string) => void;
  /** The front bin/oci-userns-runtime, when it handed the call over. */
  front?: string;
  /** Told the path the run took, for the code cache (ShimOptions.notePath). */
  notePath?: (path: string) => void;
}

const stderrLine = (line: string) => {
  writeSync(2, line);
};

/** Runs the shim; returns the exit code to use (the real runtime's, or ours when the shim failed before it ran). */
export async function runShim(argv: string[], deps: ShimDeps): Promise<number> {
  const writeError = deps.writeError ?? stderrLine;
  const logger = deps.logger ?? nullLogger;
  try {
    const result = await runShimCommand({ argv, config: deps.config, hookPath: deps.hookPath, env: deps.env ?? process.env, cwd: process.cwd(), logger, front: deps.front, notePath: deps.notePath });
    for (const warning of result.warnings) writeError(`${SHIM_PREFIX}: warning: ${warning}\n`);
    return result.exitCode;
  } catch (error) {
    // containerd reads a failed runtime's error from --log, not from stderr.
    const toEngineLog = (message: string) => writeRuntimeLogError(parseRuntimeArgs(argv, process.cwd()), `${SHIM_PREFIX}: ${message}`);
    if (isUsernsError(error)) {
      logger.error(`${SHIM_PREFIX}: ${error.message}`, { containerId: error.containerId, argv });
      writeError(`${SHIM_PREFIX}: ${error.message}\n`);
      toEngineLog(error.message);
      return error.exitCode;
    }
    writeError(`${SHIM_PREFIX}: internal error: ${error instanceof Error ? error.stack : String(error)}\n`);
    toEngineLog(`internal error: ${error instanceof Error ? error.message : String(error)}`);
    return INTERNAL_EXIT_CODE;
  }
}

/**
 * What the executable calls: the config from OCI_USERNS_CONFIG or the
 * default path (runtime arguments leave no room for --config), the log
 * writer the hook uses (no winston on the container's start path), and the
 * program's own real path for the hooks.
 */
export async function main(argv: string[], opts: { env?: NodeJS.ProcessEnv; programPath?: string; notePath?: (path: string) => void } = {}): Promise<number> {
  // The front's name for itself is for the shim alone: the runtime gets the engine's environment.
  const { [FRONT_ENV]: front, ...env } = opts.env ?? process.env;
  let config: Config;
  try {
    config = await loadConfig({ env });
  } catch (error) {
    if (!isUsernsError(error)) throw error;
    stderrLine(`${SHIM_PREFIX}: ${error.message}\n`);
    writeRuntimeLogError(parseRuntimeArgs(argv, process.cwd()), `${SHIM_PREFIX}: ${error.message}`);
    const logger = openHookLogger({ file: env.OCI_USERNS_LOG_FILE ?? DEFAULTS.logFile, level: 'error', fields: { command: 'runtime' } });
    logger.error(`${SHIM_PREFIX}: ${error.message}`, { argv });
    await logger.close();
    return error.exitCode;
  }
  const logger = openHookLogger({ file: config.logFile, level: config.logLevel, fields: { command: 'runtime' } });
  try {
    return await runShim(argv, { config, hookPath: realpathSync(opts.programPath ?? process.argv[1]!), logger, env, front: front || undefined, notePath: opts.notePath });
  } finally {
    await logger.close();
  }
}
