// The runtime's log as engines read it: containerd's runc shim runs the
// runtime with `--log FILE --log-format json` and, when a command fails,
// reports the last error line of FILE ("unable to retrieve OCI runtime
// error (open .../log.json: no such file or directory)" when there is
// none). When the shim fails before the real runtime runs, it writes its
// error there as runc would: one logrus JSON object per line.

import { appendFileSync } from 'node:fs';
import type { RuntimeArgs } from './args';

/** One line of runc's JSON log (logrus's JSON formatter: level, msg, time in RFC 3339 to the second). Pure. */
export function runtimeLogLine(message: string, now: Date): string {
  return `${JSON.stringify({ level: 'error', msg: message, time: now.toISOString().replace(/\.\d{3}Z$/, 'Z') })}\n`;
}

/**
 * Appends the error to the engine's --log file when it asked for JSON
 * (text logs are runc's own format, which nobody parses). Returns whether
 * it wrote; a log that cannot be written changes nothing (stderr has the
 * error too).
 */
export function writeRuntimeLogError(args: Pick<RuntimeArgs, 'global'>, message: string, now = new Date()): boolean {
  const file = args.global.log;
  if (typeof file !== 'string' || file === '' || args.global['log-format'] !== 'json') return false;
  try {
    appendFileSync(file, runtimeLogLine(message, now), { mode: 0o600 });
    return true;
  } catch {
    return false;
  }
}
