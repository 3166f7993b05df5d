import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SystemError } from '../../lib/errors';
import { chownVisitor, type ChownInit, type ChunkReport } from '../../lib/shift/chown';
import { displayPath, keyOfBytes } from '../../lib/sys/path-key';
import { childKeys, mountPointsBelow, walkTree, type EntryType } from '../../lib/sys/walk';
import { WalkerPool } from '../../lib/sys/walk-pool';
import { rejects } from '../helpers/assert-error';

const test = suite('tree walker');
let root = '';
const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "caf\xe9": not UTF-8
test.before.each(() => {
  root = mkdtempSync(join(tmpdir(), 'oci-userns-walk-'));
  mkdirSync(join(root, 'a/b'), { recursive: true });
  writeFileSync(join(root, 'a/b/file'), 'x');
  writeFileSync(join(root, 'café'), 'utf-8 name');
  mkdirSync(Buffer.concat([Buffer.from(`${root}/`), latin1]));
  writeFileSync(Buffer.concat([Buffer.from(`${root}/`), latin1, Buffer.from('/inside')]), 'x');
  mkdirSync(join(root, 'mnt'));
  writeFileSync(join(root, 'mnt/hidden'), 'x');
  symlinkSync('/etc', join(root, 'outward'));
});
test.after.each(() => rmSync(root, { recursive: true, force: true }));

const binary = () => keyOfBytes(Buffer.concat([Buffer.from(`${root}/`), latin1]));

test('visits every inode once, names that are not UTF-8 as byte keys, without following symlinks or entering mount points', () => {
  const seen = new Map<string, EntryType>();
  const skipped: string[] = [];
  walkTree(root, { visit: (path, _st, type) => seen.set(path, type), skip: (path) => skipped.push(path) }, [join(root, 'mnt')]);
  const expected = new Map<string, EntryType>([
    [join(root, 'a'), 'dir'],
    [join(root, 'a/b'), 'dir'],
    [join(root, 'a/b/file'), 'file'],
    [join(root, 'café'), 'file'],
    [binary(), 'dir'],
    [`${binary()}/inside`, 'file'],
    [join(root, 'outward'), 'symlink'],
  ]);
  assert.equal(new Map([...seen].sort()), new Map([...expected].sort()));
  assert.equal(skipped, [join(root, 'mnt')]);
  assert.is(displayPath(`${binary()}/inside`), `${root}/caf\\351/inside`);
});

test('childKeys reads a directory that is not UTF-8 as bytes', () => {
  assert.equal(childKeys(binary()), [`${binary()}/inside`]);
});

test('mount points come from mountinfo, only those strictly below the root', () => {
  const mountinfo = [
    `36 35 0:30 / ${root} rw - tmpfs t rw`,
    `37 36 0:31 / ${root}/mnt rw - tmpfs t rw`,
    `38 35 0:32 / ${root}-other rw - tmpfs t rw`,
  ].join('\n');
  assert.equal([...mountPointsBelow(root, mountinfo)], [`${root}/mnt`]);
});

test('a directory that vanishes is an error naming it', async () => {
  await rejects(() => walkTree(join(root, 'missing'), { visit: () => {}, skip: () => {} }, []), SystemError, `${root}/missing: ENOENT`);
});

test('walker threads (a real module) and the calling thread together report every inode once', async () => {
  const me = process.getuid!();
  const init: ChownInit = { uid: { table: [me, me + 1, 0], overflow: undefined }, gid: { table: [0, 2 ** 32 - 2, 0], overflow: undefined }, special: [join(root, 'café')], dryRun: true, chunk: 2 };
  for (let i = 0; i < 40; i++) mkdirSync(join(root, 'a', `d${i}`));
  const pool = new WalkerPool<ChownInit, ChunkReport>({ threads: 2, module: { dir: join(import.meta.dirname, '../../lib/shift'), name: 'chown-thread' }, factory: chownVisitor });
  const reports: ChunkReport[] = [];
  try {
    // Let the workers boot, so that they take part.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await pool.walk({ root, mountPoints: new Set([join(root, 'mnt')]), init, onReport: async (r) => void reports.push(r) });
  } finally {
    await pool.close();
  }
  const inodes = reports.reduce((n, r) => n + r.inodes, 0);
  const specials = reports.flatMap((r) => r.specials.map((e) => e.path));
  assert.equal(specials, [join(root, 'café')]);
  assert.is(inodes + specials.length, 47);
  assert.is(reports.reduce((n, r) => n + r.changed, 0), 0);
  assert.equal(reports.flatMap((r) => r.skipped), [join(root, 'mnt')]);
  assert.ok(reports.length > 10, 'reports in chunks of 2');
});

test.run();
