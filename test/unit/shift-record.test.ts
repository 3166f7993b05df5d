// The shift record is the tree's, not its path's (issue 14, item 2): a tree
// deleted and unpacked again at the same path, or unpacked over a shifted
// one, is shifted again, and the records of deleted trees are pruned.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseIdMap } from '../../lib/oci/idmap';
import { readState } from '../../lib/shift/record';
import { shiftTree } from '../../lib/shift/shift';
import { statePaths } from '../../lib/shift/state';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

const X = parseIdMap('0:100000:65536');
const Y = parseIdMap('0:300000:65536');
const test = skippedUnless(suite('shift record tied to the tree'), 'shift record', rootSkipReason(['getfattr', 'setfattr']));
let work = '';
let rootfs = '';
let stateDir = '';

/** A tree as an image unpacks it: owned by host root, one file of user 1000. */
function unpack(): void {
  rmSync(rootfs, { recursive: true, force: true });
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(join(rootfs, 'etc', 'sudo.conf'), '');
  writeFileSync(join(rootfs, 'etc', 'user-file'), '');
  chownSync(join(rootfs, 'etc', 'user-file'), 1000, 1000);
}

test.before.each(() => {
  work = mkdtempSync(join(tmpdir(), 'oci-userns-record-'));
  rootfs = join(work, 'rootfs');
  stateDir = join(work, 'state');
  unpack();
});
test.after.each(() => rmSync(work, { recursive: true, force: true }));

test('a tree deleted and unpacked again at the same path is shifted again (same range, and another)', async () => {
  assert.ok((await shiftTree({ rootfs, uidMap: X, gidMap: X, unmapped: 'error', stateDir })).shifted);
  unpack();
  assert.is(await readState(stateDir, rootfs), undefined, 'the record of the old tree does not describe the new one');
  const again = await shiftTree({ rootfs, uidMap: X, gidMap: X, unmapped: 'error', stateDir });
  assert.ok(again.shifted, 'not skipped');
  assert.is(lstatSync(join(rootfs, 'etc', 'sudo.conf')).uid, 100000);
  unpack();
  const other = await shiftTree({ rootfs, uidMap: Y, gidMap: Y, unmapped: 'error', stateDir });
  assert.ok(other.shifted, 'no inode called outside the mapping');
  assert.is(lstatSync(join(rootfs, 'etc', 'user-file')).uid, 301000);
});

test('a tree unpacked over a shifted one (same directory, marker kept, owners back to host root) is shifted again', async () => {
  await shiftTree({ rootfs, uidMap: X, gidMap: X, unmapped: 'error', stateDir });
  for (const path of [rootfs, join(rootfs, 'etc'), join(rootfs, 'etc', 'sudo.conf')]) chownSync(path, 0, 0);
  chownSync(join(rootfs, 'etc', 'user-file'), 1000, 1000);
  const result = await shiftTree({ rootfs, uidMap: Y, gidMap: Y, unmapped: 'error', stateDir });
  assert.ok(result.shifted);
  assert.is(lstatSync(join(rootfs, 'etc', 'sudo.conf')).uid, 300000);
});

test('the records of trees deleted are pruned at the next shift', async () => {
  const other = join(work, 'other');
  mkdirSync(other);
  await shiftTree({ rootfs: other, uidMap: Y, gidMap: Y, unmapped: 'error', stateDir });
  assert.ok(existsSync(statePaths(stateDir, other).state));
  rmSync(other, { recursive: true });
  await shiftTree({ rootfs, uidMap: X, gidMap: X, unmapped: 'error', stateDir });
  assert.not.ok(existsSync(statePaths(stateDir, other).state), 'the deleted tree left no record');
  assert.ok(existsSync(statePaths(stateDir, rootfs).state));
});

test.run();
