// Many real processes against one registry: concurrent allocation, and
// allocators killed with SIGKILL, some while they hold the lock.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS, type PoolConfig } from '../../lib/config/config';
import { hostRangesOverlap } from '../../lib/oci/idmap';
import { allocateRange, listRanges } from '../../lib/ranges/ranges';
import { parseRegistry, registryPath, type RangeEntry } from '../../lib/ranges/registry';

const B = 65536;
const POOL_START = 16 * B;
const POOL_BLOCKS = 48;
let dir = '';
let stateDir = '';
let worker = '';
let pool: PoolConfig;
// Room for everything the killed allocators manage to allocate.
const BIG_BLOCKS = 4096;
let bigPool: PoolConfig;

function start(mode: string, id: string, usePool = pool): ChildProcess {
  const args = JSON.stringify({ stateDir, pool: usePool, passwdFile: join(dir, 'passwd'), id });
  return spawn(process.execPath, [worker, mode, args], { stdio: ['pipe', 'pipe', 'inherit'] });
}

function output(child: ChildProcess): Promise<{ code: number | null; signal: string | null; stdout: string }> {
  let stdout = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout })));
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (chunk) => {
      text += chunk;
      if (text.includes('\n')) resolve(text.split('\n')[0]!);
    });
    child.on('close', () => reject(new Error(`worker ended before printing a line: ${text}`)));
  });
}

function assertSound(entries: RangeEntry[], blocks = POOL_BLOCKS) {
  const end = POOL_START + blocks * B;
  for (const e of entries) {
    for (const m of [...e.uidMappings, ...e.gidMappings]) assert.ok(m.hostID >= POOL_START && m.hostID + m.size <= end, `${e.id} outside the pool`);
  }
  for (let i = 0; i < entries.length; i++) {
    for (let j = i + 1; j < entries.length; j++) {
      assert.not.ok(hostRangesOverlap(entries[i]!.uidMappings, entries[j]!.uidMappings), `${entries[i]!.id} and ${entries[j]!.id} overlap`);
    }
  }
}

const test = suite('registry under many processes');
test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-procs-'));
  worker = join(dir, 'worker.mjs');
  await build({ entryPoints: [join(import.meta.dirname, '..', 'helpers', 'range-worker.ts')], bundle: true, platform: 'node', format: 'esm', outfile: worker, logLevel: 'warning' });
  writeFileSync(join(dir, 'subuid'), `containers:${POOL_START}:${POOL_BLOCKS * B}\n`);
  writeFileSync(join(dir, 'subgid'), `containers:${POOL_START}:${POOL_BLOCKS * B}\n`);
  writeFileSync(join(dir, 'passwd'), '');
  pool = { ...DEFAULTS.pool, subuidFile: join(dir, 'subuid'), subgidFile: join(dir, 'subgid') };
  writeFileSync(join(dir, 'subid-big'), `containers:${POOL_START}:${BIG_BLOCKS * B}\n`);
  bigPool = { ...DEFAULTS.pool, subuidFile: join(dir, 'subid-big'), subgidFile: join(dir, 'subid-big') };
});
test.before.each(() => {
  stateDir = mkdtempSync(join(dir, 'state-'));
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('64 processes allocating at once: each succeeds or fails cleanly, no overlap, all in the pool', async () => {
  const children = Array.from({ length: 64 }, (_, i) => start('alloc', `c${i}`));
  const results = children.map(output);
  // Wait until every process is up and waiting, then release them together.
  await new Promise((resolve) => setTimeout(resolve, 100));
  for (const child of children) child.stdin!.write('go\n');
  const outcomes = (await Promise.all(results)).map((r) => JSON.parse(r.stdout));
  const ok = outcomes.filter((o) => o.ok);
  const failed = outcomes.filter((o) => !o.ok);
  assert.is(ok.length, POOL_BLOCKS, JSON.stringify(failed.slice(0, 3)));
  for (const f of failed) {
    assert.is(f.name, 'HostError');
    assert.match(f.message, /pool 'containers' has no free block of 65536 ids/);
  }
  const entries = parseRegistry(readFileSync(registryPath(stateDir), 'utf8'), 'registry');
  assert.equal(entries.map((e) => e.id).sort(), ok.map((o) => o.entry.id).sort());
  assertSound(entries);
  const ms = ok.map((o) => o.ms as number).sort((a, b) => a - b);
  console.log(`  64 concurrent allocators: ${ok.length} allocated, ${failed.length} refused (pool full); time to allocate under contention: median ${ms[ms.length >> 1]!.toFixed(1)} ms, max ${ms[ms.length - 1]!.toFixed(1)} ms`);
});

test('an allocator killed while it holds the lock: the next allocation proceeds, nothing is lost', async () => {
  const before = await allocateRange({ stateDir, pool, passwdFile: join(dir, 'passwd'), storageRoots: [], id: 'before', source: 'cli' });
  const holder = start('hold', 'x');
  assert.is(await firstLine(holder), 'held');
  holder.kill('SIGKILL');
  await output(holder);
  const started = performance.now();
  const after = await allocateRange({ stateDir, pool, passwdFile: join(dir, 'passwd'), storageRoots: [], id: 'after', source: 'cli', lockTimeoutMs: 2000 });
  const ms = performance.now() - started;
  assert.ok(ms < 1000, `took ${ms} ms`);
  assert.equal((await listRanges({ stateDir })).map((e) => e.id), ['before', 'after']);
  assert.equal((await listRanges({ stateDir }))[0], before);
  assert.is.not(after.uidMappings[0]!.hostID, before.uidMappings[0]!.hostID);
});

test('allocators killed at random moments: the registry parses and keeps every allocation that was reported', async () => {
  const reported: string[] = [];
  for (let round = 0; round < 4; round++) {
    const children = Array.from({ length: 4 }, (_, i) => start('alloc-loop', `r${round}w${i}`, bigPool));
    const outputs = children.map(output);
    // Kill at a random moment once all are allocating, so some die holding the lock.
    await Promise.all(children.map(firstLine));
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 100));
    for (const child of children) child.kill('SIGKILL');
    for (const out of await Promise.all(outputs)) reported.push(...out.stdout.split('\n').filter(Boolean));
    const entries = parseRegistry(readFileSync(registryPath(stateDir), 'utf8'), 'registry');
    const ids = new Set(entries.map((e) => e.id));
    for (const id of reported) assert.ok(ids.has(id), `${id} was reported allocated but is missing`);
    assertSound(entries, BIG_BLOCKS);
    // Free the pool for the next round; this also proves the lock was not left stuck.
    rmSync(registryPath(stateDir));
    reported.length = 0;
  }
});

test.run();
