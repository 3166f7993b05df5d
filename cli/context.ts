// What every CLI command shares: the global options, the configuration
// they name, the log, and printing. Commands are thin: they parse, call
// the library, and print what it returns.

import { loadConfig as loadConfigFile } from '../lib/config/config-file';
import type { Config } from '../lib/config/config';
import type { Logger, LogMeta } from '../lib/log/logger';
import { openFileLogger, type FileLogger } from '../lib/log/cli-log';

export interface GlobalArgs {
  config?: string;
  json?: boolean;
}

declare const OCI_USERNS_VERSION: string | undefined;
export const VERSION = typeof OCI_USERNS_VERSION === 'string' ? OCI_USERNS_VERSION : '0.0.0-dev';

export function loadConfig(args: GlobalArgs): Promise<Config> {
  return loadConfigFile({ path: args.config, env: process.env });
}

const openLoggers: FileLogger[] = [];

export async function openLogger(config: Config, fields: LogMeta = {}): Promise<Logger> {
  const logger = openFileLogger({ file: config.logFile, level: config.logLevel, fields });
  openLoggers.push(logger);
  return logger;
}

/** Flushes every log opened by a command; the CLI awaits it before exiting. */
export async function closeLoggers(): Promise<void> {
  await Promise.all(openLoggers.splice(0).map((logger) => logger.close()));
}

export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function printJson(value: unknown): void {
  print(JSON.stringify(value, null, 2));
}
