// Shifts a tree holding every kind of inode (setuid/setgid, ACLs, file caps,
// hard links, outward symlinks, devices, fifo, socket, sticky dir, a nested
// tmpfs) and checks every inode; then unshifts and finds the original.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chmodSync, lstatSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeAcl } from '../../lib/shift/acl';
import { parseIdMap } from '../../lib/oci/idmap';
import { memoryLogger } from '../../lib/log/logger';
import { ensureShifted, shiftTree, unshiftTree } from '../../lib/shift/shift';
import { buildTree, sh, snapshot } from '../helpers/shift-tree';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

const R = parseIdMap('0:100000:65536');
const R2 = parseIdMap('0:200000:65536');
const skip = rootSkipReason(['setfacl', 'setcap', 'getcap', 'getfattr', 'setfattr', 'mknod', 'python3', 'mount']);
const test = skippedUnless(suite('shift of a tree with every kind of inode'), 'shift-tree', skip);
let work = '';
let root = '';
let hostFile = '';
let stateDir = '';
let mounted = false;

test.before(() => {
  work = mkdtempSync(join(tmpdir(), 'oci-userns-shift-'));
  chmodSync(work, 0o755);
  root = join(work, 'rootfs');
  stateDir = join(work, 'state');
  hostFile = join(work, 'host-secret');
  writeFileSync(hostFile, 'host\n');
  sh('mkdir', [root]);
  buildTree(root, hostFile);
  sh('mount', ['-t', 'tmpfs', 'inner', join(root, 'mnt/inner')]);
  mounted = true;
  writeFileSync(join(root, 'mnt/inner/on-tmpfs'), 'x');
});
test.after(() => {
  if (mounted) sh('umount', [join(root, 'mnt/inner')]);
  rmSync(work, { recursive: true, force: true });
});

const shifted = (id: number) => (id < 65536 ? id + 100000 : id);

test('every inode moves into the range, with modes, ACLs and caps kept', async () => {
  const before = snapshot(root);
  const logger = memoryLogger();
  const result = await shiftTree({ rootfs: root, uidMap: R, gidMap: R, unmapped: 'error', stateDir, logger, batchSize: 5 });
  assert.ok(result.shifted);
  assert.equal(result.skippedMounts, [join(root, 'mnt/inner')]);
  assert.ok(logger.records.some((r) => r.message.includes('skipped a mount point')));
  const after = snapshot(root);
  assert.equal([...after.keys()], [...before.keys()]);
  for (const [path, b] of before) {
    const a = after.get(path)!;
    assert.is(a.uid, shifted(b.uid), `${path} uid`);
    assert.is(a.gid, shifted(b.gid), `${path} gid`);
    assert.is(a.mode, b.mode, `${path} mode (setuid/setgid kept)`);
    for (const key of ['acl', 'defaultAcl'] as const) {
      if (!b[key]) continue;
      const want = decodeAcl(Buffer.from(b[key]!.slice(2), 'hex')).map((e) => (e.id === undefined ? e : { ...e, id: shifted(e.id) }));
      assert.equal(decodeAcl(Buffer.from(a[key]!.slice(2), 'hex')), want, `${path} ${key}`);
    }
  }
  assert.is(lstatSync(hostFile).uid, 0, 'the host file behind the symlinks is untouched');
  assert.is(lstatSync(join(root, 'mnt/inner/on-tmpfs')).uid, 0, 'the nested mount is untouched');
  assert.is(lstatSync(join(root, 'etc/su-link')).ino, lstatSync(join(root, 'usr/bin/su')).ino);
  assert.match(sh('getcap', ['-n', join(root, 'usr/bin/ping')]), 'cap_net_raw=ep [rootid=100000]');
  assert.match(sh('getcap', ['-n', join(root, 'usr/bin/both')]), /cap_net_admin,cap_sys_time=p \[rootid=100000\]/);
});

test('shifting again to the same range changes nothing; ensureShifted skips in O(1)', async () => {
  const again = await shiftTree({ rootfs: root, uidMap: R, gidMap: R, unmapped: 'error', stateDir });
  assert.not.ok(again.shifted);
  const ensured = await ensureShifted({ rootfs: root, uidMap: R, gidMap: R, mode: 'auto', unmapped: 'error', stateDir });
  assert.is(ensured.action, 'skipped');
  assert.is(ensured.inodes, 0);
  const verified = await ensureShifted({ rootfs: root, uidMap: R, gidMap: R, mode: 'always-verify', unmapped: 'error', stateDir });
  assert.is(verified.action, 'verified');
  assert.is(verified.changed, 0);
  assert.is((await ensureShifted({ rootfs: root, uidMap: R2, gidMap: R2, mode: 'never', unmapped: 'error', stateDir })).action, 'disabled');
});

test('range to range without passing through host root, then unshift restores the original', async () => {
  const original = snapshot(root);
  for (const [path, s] of original) assert.ok(s.uid >= 100000 && s.gid >= 100000, `${path} is shifted`);
  const moved = await ensureShifted({ rootfs: root, uidMap: R2, gidMap: R2, mode: 'auto', unmapped: 'error', stateDir });
  assert.is(moved.action, 'shifted');
  assert.is(lstatSync(join(root, 'home/user/notes')).uid, 201000);
  assert.match(sh('getcap', ['-n', join(root, 'usr/bin/ping')]), '[rootid=200000]');
  await unshiftTree({ rootfs: root, unmapped: 'error', stateDir });
  const back = snapshot(root);
  const before = new Map([...original].map(([p, s]) => [p, { ...s, uid: s.uid - 100000, gid: s.gid - 100000 }]));
  for (const [path, b] of before) {
    const a = back.get(path)!;
    assert.equal([a.uid, a.gid, a.mode], [b.uid, b.gid, b.mode], path);
  }
  assert.match(sh('getcap', ['-n', join(root, 'usr/bin/ping')]), /ping cap_net_raw=ep\n/);
  assert.match(sh('getfacl', ['-n', '-p', join(root, 'etc/shadow')]), /user:1000:r-x/);
});

test.run();
