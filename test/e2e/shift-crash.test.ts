// Kills a shift with SIGKILL before each change it makes to the tree (every
// chown and chmod, so between a journal write and the chown it covers,
// between a chown and the capability or mode restore, and between steps of
// a two-step move), reruns it, and checks every inode against an
// uninterrupted shift of the same tree.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseIdMap } from '../../lib/oci/idmap';
import { shiftTree } from '../../lib/shift/shift';
import { statePaths } from '../../lib/shift/state';
import { buildTree, snapshot, type InodeState } from '../helpers/shift-tree';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

const CHILD = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '../helpers/shift-child.ts');
const test = skippedUnless(suite('a killed shift finishes exactly on rerun'), 'shift-crash', rootSkipReason(['setfacl', 'setcap', 'getfattr', 'setfattr', 'mknod', 'python3']));
let work = '';
test.before(() => {
  work = mkdtempSync(join(tmpdir(), 'oci-userns-crash-'));
  chmodSync(work, 0o755);
  writeFileSync(join(work, 'host-secret'), 'host\n');
});
test.after(() => rmSync(work, { recursive: true, force: true }));

function freshTree(name: string): { root: string; stateDir: string } {
  const root = join(work, name, 'rootfs');
  mkdirSync(root, { recursive: true });
  buildTree(root, join(work, 'host-secret'));
  return { root, stateDir: join(work, name, 'state') };
}

function runChild(root: string, stateDir: string, map: string, crashAt: number): { killed: boolean; calls?: number } {
  const child = spawnSync(process.execPath, ['--import', 'tsx', CHILD, root, stateDir, map, String(crashAt), '4'], { encoding: 'utf8' });
  if (child.signal === 'SIGKILL') return { killed: true };
  assert.is(child.status, 0, child.stderr);
  return { killed: false, calls: Number(/done (\d+)/.exec(child.stdout)?.[1]) };
}

function same(actual: Map<string, InodeState>, expected: Map<string, InodeState>, label: string): void {
  assert.equal([...actual.keys()], [...expected.keys()], label);
  for (const [path, want] of expected) assert.equal(actual.get(path), want, `${label}: ${path}`);
}

async function crashEverywhere(label: string, prepare: ((root: string, stateDir: string) => Promise<void>) | undefined, map: string, stride = 1): Promise<number> {
  const reference = freshTree(`${label}-reference`);
  await prepare?.(reference.root, reference.stateDir);
  const { calls } = runChild(reference.root, reference.stateDir, map, 0);
  const expected = snapshot(reference.root);
  let points = 0;
  for (let at = 1; at <= calls!; at += stride) {
    const tree = freshTree(`${label}-${at}`);
    await prepare?.(tree.root, tree.stateDir);
    assert.ok(runChild(tree.root, tree.stateDir, map, at).killed, `${label}: killed before change ${at}`);
    await shiftTree({ rootfs: tree.root, uidMap: parseIdMap(map), gidMap: parseIdMap(map), unmapped: 'error', stateDir: tree.stateDir });
    same(snapshot(tree.root), expected, `${label}, killed before change ${at}`);
    rmSync(join(work, `${label}-${at}`), { recursive: true, force: true });
    points++;
  }
  return points;
}

test('first shift from host ownership, killed before each chown and chmod', async () => {
  const points = await crashEverywhere('first', undefined, '0:100000:65536');
  assert.ok(points > 25, `only ${points} crash points`);
});

test('a move to an overlapping range (two steps through a free range), killed everywhere', async () => {
  const R = parseIdMap('0:100000:65536');
  const prepare = async (root: string, stateDir: string) => {
    await shiftTree({ rootfs: root, uidMap: R, gidMap: R, unmapped: 'error', stateDir });
  };
  const points = await crashEverywhere('overlap', prepare, '0:130000:65536', 2);
  assert.ok(points > 25, `only ${points} crash points`);
});

/** Runs the child without waiting; resolves with its exit status or signal and its stderr. */
function startChild(root: string, stateDir: string, map: string, crashAt: number, pauseMs: number): Promise<{ status: number | null; signal: string | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, root, stateDir, map, String(crashAt), '4', String(pauseMs)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve) => child.on('close', (status, signal) => resolve({ status, signal, stderr })));
}

test('two shifts of one tree started together, the one holding the lock killed: the other finishes the tree exactly', async () => {
  const map = '0:100000:65536';
  const reference = freshTree('concurrent-reference');
  runChild(reference.root, reference.stateDir, map, 0);
  const expected = snapshot(reference.root);
  const tree = freshTree('concurrent');
  // The first holds the lock, slowed down, and is killed before its 12th change; the second starts while it holds the lock.
  const first = startChild(tree.root, tree.stateDir, map, 12, 150);
  const lock = statePaths(tree.stateDir, tree.root).lock;
  for (let waited = 0; !existsSync(lock); waited += 10) {
    assert.ok(waited < 20_000, 'the first shift never took the lock');
    await sleep(10);
  }
  const second = startChild(tree.root, tree.stateDir, map, 0, 0);
  const [a, b] = await Promise.all([first, second]);
  assert.is(a.signal, 'SIGKILL', `the first shift was to be killed: ${a.stderr}`);
  assert.is(b.status, 0, `the second shift waits for the lock, breaks it once its holder is gone and finishes: ${b.stderr}`);
  same(snapshot(tree.root), expected, 'after a concurrent shift whose lock holder was killed');
  assert.not.ok(existsSync(lock), 'the lock is released');
});

test.run();
