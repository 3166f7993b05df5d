// Kills a shift with SIGKILL before each change it makes to the tree (every
// chown and chmod, so between a journal write and the chown it covers,
// between a chown and the capability or mode restore, and between steps of
// a two-step move), reruns it, and checks every inode against an
// uninterrupted shift of the same tree.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseIdMap } from '../../lib/oci/idmap';
import { shiftTree } from '../../lib/shift/shift';
import { buildTree, hasTool, snapshot, type InodeState } from '../helpers/shift-tree';

const CHILD = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '../helpers/shift-child.ts');
const missing = ['setfacl', 'setcap', 'getfattr', 'setfattr', 'mknod', 'python3'].filter((t) => !hasTool(t));
const isRoot = process.getuid?.() === 0;

const test = suite('a killed shift finishes exactly on rerun');
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
  if (missing.length || !isRoot) {
    console.log(`SKIP shift-crash: needs root and ${missing.join(', ')}`);
    return;
  }
  const points = await crashEverywhere('first', undefined, '0:100000:65536');
  assert.ok(points > 25, `only ${points} crash points`);
});

test('a move to an overlapping range (two steps through a free range), killed everywhere', async () => {
  if (missing.length || !isRoot) return;
  const R = parseIdMap('0:100000:65536');
  const prepare = async (root: string, stateDir: string) => {
    await shiftTree({ rootfs: root, uidMap: R, gidMap: R, unmapped: 'error', stateDir });
  };
  const points = await crashEverywhere('overlap', prepare, '0:130000:65536', 2);
  assert.ok(points > 25, `only ${points} crash points`);
});

test.run();
