// The narrow logging interface every library module takes in its options.
// Kept apart from lib/log/cli-log.ts (the winston setup) so that modules and tests
// that only need to log do not load winston.

export type LogMeta = Record<string, unknown>;

export interface Logger {
  error(message: string, meta?: LogMeta): void;
  warn(message: string, meta?: LogMeta): void;
  info(message: string, meta?: LogMeta): void;
  debug(message: string, meta?: LogMeta): void;
}

export const nullLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
};

export interface LogRecord {
  level: 'error' | 'warn' | 'info' | 'debug';
  message: string;
  meta?: LogMeta;
}

/** A logger that keeps what it is told, for tests. */
export function memoryLogger(): Logger & { records: LogRecord[] } {
  const records: LogRecord[] = [];
  const at = (level: LogRecord['level']) => (message: string, meta?: LogMeta) => {
    records.push(meta === undefined ? { level, message } : { level, message, meta });
  };
  return { records, error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}
