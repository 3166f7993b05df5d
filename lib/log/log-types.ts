// What both log writers (winston for the CLI, plain appends for the hook) offer.

import type { LogLevel } from '../config/config';
import type { Logger, LogMeta } from './logger';

export interface FileLogger extends Logger {
  /** Flushes and closes the file; a short-lived process must await it before exiting. */
  close(): Promise<void>;
}

export interface FileLoggerOptions {
  file: string;
  level: LogLevel;
  /** Fields on every line (container id, stage, command). */
  fields?: LogMeta;
}
