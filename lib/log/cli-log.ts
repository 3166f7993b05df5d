// The log file: JSON lines through winston, one file for every command and
// hook stage (the hook writes the same lines without winston: lib/log/hook-log.ts). Runtimes drop a hook's stderr (crun without the
// run.oci.hooks.stderr annotation), so the log is where an operator reads
// what happened, and it carries the same line the runtime would show.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import winston from 'winston';
import type { LogLevel } from '../config/config';
import type { FileLogger, FileLoggerOptions } from './log-types';
import type { LogMeta } from './logger';

export type { FileLogger, FileLoggerOptions } from './log-types';

const addTime = winston.format((info) => {
  info.time = new Date().toISOString();
  return info;
});

export function openFileLogger(options: FileLoggerOptions): FileLogger {
  try {
    mkdirSync(dirname(options.file), { recursive: true, mode: 0o755 });
  } catch {
    // The transport reports the same failure; logging must never stop the work.
  }
  const transport = new winston.transports.File({ filename: options.file });
  // A log that cannot be written must not fail the container: the stderr
  // line still reaches runc, and `oci-userns doctor` checks the log directory.
  transport.on('error', () => {});
  const logger = winston.createLogger({
    level: options.level,
    defaultMeta: options.fields ?? {},
    format: winston.format.combine(addTime(), winston.format.json()),
    transports: [transport],
    exitOnError: false,
  });
  const at = (level: LogLevel) => (message: string, meta?: LogMeta) => {
    logger.log(level, message, meta ?? {});
  };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    close: () =>
      new Promise<void>((resolve) => {
        transport.once('finish', () => resolve());
        transport.once('error', () => resolve());
        logger.end();
      }),
  };
}
