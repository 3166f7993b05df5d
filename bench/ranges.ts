// npm run bench:ranges [-- DIR]: the cost of one registry
// operation as the hook pays it (in process, warm), with N containers
// already registered: guard (register at createRuntime), guard again
// (idempotent, prestart after createRuntime), release (poststop), and
// allocate. DIR (default: a temp dir under /var/tmp, a real disk) decides
// what fsync costs; give a tmpfs path to see the cost without it.
// Then the host-wide scan (lib/ranges/userns-scan.ts) alone and inside
// guard and allocate, interleaved, with the host as it is and with 1,000
// more processes (sleep) in 4 user namespaces made by unshare (root only).

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULTS } from '../lib/config/config';
import { allocateRange, guardContainer, releaseContainer } from '../lib/ranges/ranges';
import { readForeignIds, readLiveNamespaces } from '../lib/ranges/userns-scan';
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

/**
 * `count` sleep processes in each of `namespaces` new user namespaces, each
 * mapped 0 -> a block of its own (written by us, root in the parent
 * namespace, as runc does); resolves once all run.
 */
async function crowd(namespaces: number, count: number): Promise<ChildProcess[]> {
  const script = `read go; for i in $(seq ${count}); do sleep 600 & done; echo up; wait`;
  const children = Array.from({ length: namespaces }, (_, n) => {
    const child = spawn('unshare', ['--user', 'sh', '-c', script], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    return { child, map: `0 ${(40_000 + n) * B} ${B}\n` };
  });
  // unshare has made the namespace once sh runs; wait until the child is in a namespace other than ours.
  const own = readlinkSync('/proc/self/ns/user');
  for (const { child, map } of children) {
    while (readlinkSync(`/proc/${child.pid}/ns/user`) === own) await new Promise((resolve) => setTimeout(resolve, 5));
    writeFileSync(`/proc/${child.pid}/uid_map`, map);
    writeFileSync(`/proc/${child.pid}/gid_map`, map);
    child.stdin!.end('go\n');
  }
  await Promise.all(
    children.map(
      ({ child }) =>
        new Promise<void>((resolve, reject) => {
          child.stdout!.once('data', () => resolve());
          child.once('exit', (code) => reject(new Error(`unshare exited ${code}`)));
        }),
    ),
  );
  return children.map((c) => c.child);
}

const processCount = () => readdirSync('/proc').filter((n) => /^\d+$/.test(n)).length;

async function scanRows(stateDir: string, pool: typeof DEFAULTS.pool, label: string): Promise<void> {
  const scan: number[] = [];
  const guardNew: number[] = [];
  const guardAgain: number[] = [];
  const allocate: number[] = [];
  for (let r = 0; r < runs; r++) {
    const opts = { stateDir, id: `s${r}`, uidMappings: [{ containerID: 0, hostID: (50_000 + r) * B, size: B }], gidMappings: [{ containerID: 0, hostID: (50_000 + r) * B, size: B }], source: 'external' as const, overlap: 'refuse' as const };
    scan.push(await time(async () => readForeignIds()));
    guardNew.push(await time(() => guardContainer(opts)));
    guardAgain.push(await time(() => guardContainer(opts)));
    allocate.push(await time(() => allocateRange({ stateDir, pool, passwdFile: join(base, 'passwd'), id: `sa${r}`, source: 'shim' })));
    await releaseContainer({ stateDir, id: `s${r}` });
    await releaseContainer({ stateDir, id: `sa${r}` });
  }
  const row = (name: string, xs: number[]) => `  ${name.padEnd(40)} median ${median(xs).toFixed(2)} ms  p95 ${p95(xs).toFixed(2)} ms`;
  console.log(`${label}: ${processCount()} processes, ${readLiveNamespaces().length} user namespaces besides ours, ${runs} runs:`);
  console.log(
    [
      row('scan (live namespaces + containers/storage)', scan),
      row('guard (new entry, scans)', guardNew),
      row('guard (same entry again, no scan)', guardAgain),
      row('allocate (scans)', allocate),
      `  guard new / guard again: ${(median(guardNew) / median(guardAgain)).toFixed(2)}x`,
    ].join('\n'),
  );
}

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
  if (process.getuid?.() === 0) {
    const stateDir = join(base, 'state-scan');
    mkdirSync(stateDir, { mode: 0o700 });
    await scanRows(stateDir, pool, 'host as it is');
    const children = await crowd(4, 250);
    try {
      await scanRows(stateDir, pool, '1,000 more sleep processes in 4 user namespaces');
    } finally {
      for (const c of children) process.kill(-c.pid!, 'SIGKILL');
    }
  } else {
    console.log('SKIPPED the host-wide scan rows: unshare --map-users needs root');
  }
} finally {
  rmSync(base, { recursive: true, force: true });
}
