import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chownSync, lstatSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RefusedError } from '../../lib/errors';
import { parseIdMap } from '../../lib/oci/idmap';
import { dryRunShift, ensureShifted, shiftTree } from '../../lib/shift/shift';
import { readStateFast } from '../../lib/shift/state';
import { rejects } from '../helpers/assert-error';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

const R = parseIdMap('0:100000:65536');

const unmapped = skippedUnless(suite('ids outside the mapping'), 'shift unit', rootSkipReason(['getfattr', 'setfattr']));
let work = '';
unmapped.before.each(() => {
  work = mkdtempSync(join(tmpdir(), 'oci-userns-shift-unit-'));
  mkdirSync(join(work, 'rootfs'));
  for (let i = 0; i < 12; i++) {
    writeFileSync(join(work, 'rootfs', `far${String(i).padStart(2, '0')}`), '');
    chownSync(join(work, 'rootfs', `far${String(i).padStart(2, '0')}`), 70000 + i, 0);
  }
  writeFileSync(join(work, 'rootfs', 'near'), '');
});
unmapped.after.each(() => rmSync(work, { recursive: true, force: true }));

unmapped('are an error naming at most 10 paths; nothing is left half done (the tree keeps its owners, no shift pending)', async () => {
  const rootfs = join(work, 'rootfs');
  const stateDir = join(work, 'state');
  const { message } = await rejects(shiftTree({ rootfs, uidMap: R, gidMap: R, unmapped: 'error', stateDir }), RefusedError, '12 inode(s)');
  assert.match(message, 'and 2 more');
  assert.is(message.split(rootfs + '/far').length - 1, 10);
  assert.is(lstatSync(join(rootfs, 'near')).uid, 0, 'moved back');
  assert.is(`${lstatSync(rootfs).uid}:${lstatSync(rootfs).gid}`, '0:0', 'the rootfs directory keeps its owner, so alloc --size auto can size the tree again');
  assert.not.ok(readStateFast(stateDir, rootfs)?.pending, 'no shift pending');
  const result = await ensureShifted({ rootfs, uidMap: R, gidMap: R, mode: 'auto', unmapped: 'overflow', stateDir });
  assert.is(result.action, 'shifted');
  assert.is(lstatSync(join(rootfs, 'far03')).uid, 165534);
  assert.is(lstatSync(rootfs).uid, 100000);
});

unmapped('dry run counts without changing anything', async () => {
  const rootfs = join(work, 'rootfs');
  const r = await dryRunShift({ rootfs, uidMap: R, gidMap: R, unmapped: 'error', stateDir: join(work, 'state') });
  assert.equal([r.inodes, r.changed, r.unmapped, r.pending], [14, 2, 12, false]);
  assert.is(lstatSync(join(rootfs, 'near')).uid, 0);
});

unmapped('an engine-shifted rootfs (owner already per the mapping, no record) is skipped in auto mode', async () => {
  const rootfs = join(work, 'rootfs');
  chownSync(rootfs, 100000, 100000);
  const r = await ensureShifted({ rootfs, uidMap: R, gidMap: R, mode: 'auto', unmapped: 'error', stateDir: join(work, 'state') });
  assert.is(r.action, 'skipped');
  assert.is(lstatSync(join(rootfs, 'near')).uid, 0);
});

unmapped('a move to an overlapping range (two steps through a free one) counts each inode once', async () => {
  const rootfs = join(work, 'rootfs');
  const stateDir = join(work, 'state');
  const wide = parseIdMap('0:100000:131072');
  const first = await shiftTree({ rootfs, uidMap: wide, gidMap: wide, unmapped: 'error', stateDir });
  assert.equal([first.inodes, first.changed], [14, 14]);
  const overlapping = parseIdMap('0:165536:131072');
  const moved = await shiftTree({ rootfs, uidMap: overlapping, gidMap: overlapping, unmapped: 'error', stateDir });
  assert.equal([moved.inodes, moved.changed], [14, 14]);
  assert.is(lstatSync(join(rootfs, 'far03')).uid, 165536 + 70003);
});

unmapped.run();
