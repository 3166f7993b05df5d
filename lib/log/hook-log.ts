// The hook's log writer: the same JSON lines as the winston log of the CLI
// (lib/log/cli-log.ts), written with plain appends. The hook runs on every
// container start and stop, and loading winston there costs about 35 ms, half
// again the whole Node.js start-up (README, "Start-up cost"); the hook writes
// one to three lines, which needs none of winston's transports or formats.

import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { FileLogger, FileLoggerOptions } from './log-types';
import type { LogMeta } from './logger';

const LEVELS = { error: 0, warn: 1, info: 2, debug: 3 } as const;

/** One log line, in the shape winston's json format gives the CLI's lines. */
export function formatLogLine(level: keyof typeof LEVELS, message: string, fields: LogMeta, meta: LogMeta | undefined): string {
  const record: LogMeta = { ...fields };
  for (const [key, value] of Object.entries(meta ?? {})) if (value !== undefined) record[key] = value;
  return `${JSON.stringify({ ...record, level, message, time: new Date().toISOString() })}\n`;
}

export function openHookLogger(options: FileLoggerOptions): FileLogger {
  let fd: number | undefined;
  let failed = false;
  const threshold = LEVELS[options.level];
  const write = (line: string) => {
    if (failed) return;
    try {
      if (fd === undefined) {
        mkdirSync(dirname(options.file), { recursive: true, mode: 0o755 });
        fd = openSync(options.file, 'a', 0o640);
      }
      writeSync(fd, line);
    } catch {
      // A log that cannot be written must not fail the container: the
      // stderr line still reaches runc, and `oci-userns doctor` checks the log.
      failed = true;
    }
  };
  const at = (level: keyof typeof LEVELS) => (message: string, meta?: LogMeta) => {
    if (LEVELS[level] <= threshold) write(formatLogLine(level, message, options.fields ?? {}, meta));
  };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    close: async () => {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}
