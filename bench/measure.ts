// Whole-process timing for the benchmark scripts: runs commands in
// alternation (so a noisy neighbour hurts every candidate alike) and reports
// medians. Benchmarks are scripts, never timed tests.

import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

export interface Candidate {
  name: string;
  command: string;
  args: string[];
  /** Written to the child's stdin on every run (through a socket pair: spawnSync's input). */
  input?: string;
  /**
   * The child's stdin, opened anew for each run: a file that holds the
   * whole input reads like a pipe its writer has filled and closed, which
   * is how runc and crun hand a hook its state (Go's os/exec copies it
   * into a pipe). A socket pair, unlike a pipe, cannot be reopened from
   * /proc/self/fd/0, so the hook falls back to process.stdin there.
   */
  stdinFile?: string;
  /** Runs before each timed run, untimed (e.g. resetting a tree). */
  prepare?: () => void;
  options?: SpawnSyncOptions;
}

/** The child's stdin for one run, and what to close after it. */
function stdinOf(candidate: Candidate): { stdin: number | 'pipe' | 'ignore'; close: () => void } {
  if (candidate.stdinFile === undefined) return { stdin: candidate.input === undefined ? 'ignore' : 'pipe', close: () => undefined };
  const fd = openSync(candidate.stdinFile, 'r');
  return { stdin: fd, close: () => closeSync(fd) };
}

export function timeOnce(candidate: Candidate): number {
  candidate.prepare?.();
  const { stdin, close } = stdinOf(candidate);
  const started = process.hrtime.bigint();
  const result = spawnSync(candidate.command, candidate.args, { input: candidate.input, stdio: [stdin, 'ignore', 'pipe'], ...candidate.options });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  close();
  if (result.status !== 0) {
    throw new Error(`${candidate.name}: exit ${result.status ?? result.signal}: ${result.stderr?.toString().trim()}`);
  }
  return ms;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Runs every candidate `runs` times, interleaved, after `warmup` untimed rounds; returns medians in ms. */
export function compare(candidates: Candidate[], runs: number, warmup = 2): Map<string, number> {
  const samples = new Map<string, number[]>(candidates.map((c) => [c.name, []]));
  for (let round = 0; round < warmup + runs; round++) {
    for (const candidate of candidates) {
      const ms = timeOnce(candidate);
      if (round >= warmup) samples.get(candidate.name)!.push(ms);
    }
  }
  return new Map([...samples].map(([name, values]) => [name, median(values)]));
}

/** Peak resident memory of one run, in KiB, read by GNU time. */
export function peakRssKiB(candidate: Candidate): number {
  candidate.prepare?.();
  const { stdin, close } = stdinOf(candidate);
  const result = spawnSync('/usr/bin/time', ['-f', '%M', candidate.command, ...candidate.args], {
    input: candidate.input,
    stdio: [stdin === 'ignore' ? 'pipe' : stdin, 'ignore', 'pipe'],
    ...candidate.options,
  });
  close();
  const lines = result.stderr.toString().trim().split('\n');
  const value = Number(lines[lines.length - 1]);
  if (!Number.isFinite(value)) throw new Error(`${candidate.name}: cannot read peak memory: ${lines.join(' ')}`);
  return value;
}

export function printTable(rows: Array<[string, ...string[]]>): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const row of rows) console.log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
}
