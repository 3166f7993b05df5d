// The journal of a shift step: what chown destroys (file capabilities,
// setuid/setgid bits), written and synced before the chown that destroys
// it, so that a rerun after a kill can put it back. One file per rootfs
// (statePaths(...).journal), for the step its header names.

import { closeSync, fdatasyncSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { errnoCode, systemError } from '../errors';

/** A destroyed attribute saved before the chown: capability value (hex) or mode bits to restore. */
export interface JournalRecord {
  path: string;
  cap?: string;
  mode?: number;
}

/** The step a journal's first line names; undefined when a kill cut it short (it was never synced, so nothing follows). */
function headerStep(line: string): number | undefined {
  try {
    const header = JSON.parse(line) as { step?: unknown };
    return typeof header?.step === 'number' ? header.step : undefined;
  } catch {
    return undefined;
  }
}

/** Append-only journal for one step; every append is on disk before it returns. */
export class Journal {
  private constructor(private readonly fd: number, readonly path: string) {}

  static create(path: string, step: number): Journal {
    try {
      const fd = openSync(path, 'w', 0o600);
      writeSync(fd, `${JSON.stringify({ step })}\n`);
      fdatasyncSync(fd);
      return new Journal(fd, path);
    } catch (error) {
      throw systemError('cannot create the shift journal', path, error);
    }
  }

  /** Reopens a journal to go on with the same step; returns its records. */
  static resume(path: string, step: number): { journal: Journal; records: Map<string, JournalRecord> } {
    const records = new Map<string, JournalRecord>();
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw systemError('cannot read the shift journal', path, error);
    }
    const lines = text.split('\n');
    if (headerStep(lines[0]!) !== step) return { journal: Journal.create(path, step), records };
    // The last line may be cut short by a kill during its write; it was never synced, so its chown never ran.
    for (const line of lines.slice(1)) {
      if (line === '') continue;
      try {
        const record = JSON.parse(line) as JournalRecord;
        records.set(record.path, { ...records.get(record.path), ...record });
      } catch {
        break;
      }
    }
    try {
      const fd = openSync(path, 'a', 0o600);
      return { journal: new Journal(fd, path), records };
    } catch (error) {
      throw systemError('cannot open the shift journal', path, error);
    }
  }

  append(records: readonly JournalRecord[]): void {
    if (records.length === 0) return;
    try {
      writeSync(this.fd, records.map((r) => `${JSON.stringify(r)}\n`).join(''));
      fdatasyncSync(this.fd);
    } catch (error) {
      throw systemError('cannot write the shift journal', this.path, error);
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  remove(): void {
    this.close();
    rmSync(this.path, { force: true });
  }
}
