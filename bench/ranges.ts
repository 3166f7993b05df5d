// npm run bench:ranges [-- DIR]: the cost of one registry
// operation as the hook pays it (in process, warm), with N containers
// already registered: guard (register at createRuntime), guard again
// (idempotent, prestart after createRuntime), release (poststop), and
// allocate. DIR (default: a temp dir under /var/tmp, a real disk) decides
// what fsync costs; give a tmpfs path to see the cost without it.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULTS } from '../lib/config/config';
import { allocateRange, guardContainer, releaseContainer } from '../lib/ranges/ranges';
import { median } from './measure';

const base = mkdtempSync(join(process.argv[2] ?? '/var/tmp', 'oci-userns-bench-ranges-'));
const runs = Number(process.env.BENCH_RUNS ?? 200);
const B = 65536;

async function time(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.95)]!;

try {
  writeFileSync(join(base, 'subid'), `containers:${B}:${60_000 * B}\n`);
  writeFileSync(join(base, 'passwd'), '');
  const pool = { ...DEFAULTS.pool, subuidFile: join(base, 'subid'), subgidFile: join(base, 'subid') };
  for (const registered of [0, 100, 1000]) {
    const stateDir = join(base, `state-${registered}`);
    mkdirSync(stateDir, { mode: 0o700 });
    const map = (i: number) => [{ containerID: 0, hostID: (i + 1) * B, size: B }];
    for (let i = 0; i < registered; i++) await guardContainer({ stateDir, id: `existing-${i}`, uidMappings: map(i), gidMappings: map(i), source: 'external', overlap: 'refuse' });
    const guard: number[] = [];
    const again: number[] = [];
    const release: number[] = [];
    const allocate: number[] = [];
    for (let r = 0; r < runs; r++) {
      const i = registered + r;
      const opts = { stateDir, id: `c${r}`, uidMappings: map(i), gidMappings: map(i), source: 'external' as const, pid: process.pid, overlap: 'refuse' as const };
      guard.push(await time(() => guardContainer(opts)));
      again.push(await time(() => guardContainer(opts)));
      release.push(await time(() => releaseContainer({ stateDir, id: `c${r}` })));
      allocate.push(await time(() => allocateRange({ stateDir, pool, passwdFile: join(base, 'passwd'), id: `a${r}`, source: 'shim' })));
      await releaseContainer({ stateDir, id: `a${r}` });
    }
    const row = (name: string, xs: number[]) => `  ${name.padEnd(28)} median ${median(xs).toFixed(2)} ms  p95 ${p95(xs).toFixed(2)} ms`;
    console.log(`${registered} containers registered, ${runs} runs, state in ${base}:`);
    console.log([row('guard (new entry)', guard), row('guard (same entry again)', again), row('release', release), row('allocate', allocate)].join('\n'));
  }
} finally {
  rmSync(base, { recursive: true, force: true });
}
