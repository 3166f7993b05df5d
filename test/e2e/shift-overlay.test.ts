// The shift on a real overlay rootfs (issue 14, item 5): the lower layer on
// a tmpfs and the upper on the temp directory's filesystem (layers on two
// filesystems), index=off. With xino=off overlayfs reports the lower
// layer's device for files not yet copied up (the walker took them for
// mount points); with xino=on inode numbers carry layer bits above 2^53
// (two hard-linked files aliased as one). Chowning the first name of a hard
// link copies it up as a new inode: every other name must still be shifted,
// with its capability and ACL.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, chmodSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseIdMap } from '../../lib/oci/idmap';
import { shiftTree } from '../../lib/shift/shift';
import { sh } from '../helpers/shift-tree';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

const R = parseIdMap('0:100000:65536');
const skip = rootSkipReason(['mount', 'umount', 'setcap', 'getcap', 'setfacl', 'getfacl', 'getfattr', 'setfattr']);
const test = skippedUnless(suite('shift of an overlay rootfs (layers on two filesystems, index=off)'), 'shift-overlay', skip);
let work = '';
const mounts: string[] = [];

function mount(args: string[], at: string): void {
  sh('mount', [...args, at]);
  mounts.push(at);
}

/** The lower layer: hard-linked pairs (one with a capability, one with an ACL, one of user 1000) beside plain files, all numbered close together. */
function buildLower(lower: string): void {
  mkdirSync(join(lower, 'bin'), { recursive: true });
  mkdirSync(join(lower, 'etc'));
  for (let i = 0; i < 20; i++) writeFileSync(join(lower, 'etc', `plain${i}`), `${i}\n`);
  writeFileSync(join(lower, 'bin', 'ping'), 'ping\n');
  chmodSync(join(lower, 'bin', 'ping'), 0o755);
  sh('setcap', ['cap_net_raw=ep', join(lower, 'bin', 'ping')]);
  linkSync(join(lower, 'bin', 'ping'), join(lower, 'bin', 'ping-link'));
  writeFileSync(join(lower, 'etc', 'shadow'), 'x\n');
  sh('setfacl', ['-m', 'u:1000:r', join(lower, 'etc', 'shadow')]);
  linkSync(join(lower, 'etc', 'shadow'), join(lower, 'etc', 'shadow-link'));
  writeFileSync(join(lower, 'etc', 'notes'), 'n\n');
  chownSync(join(lower, 'etc', 'notes'), 1000, 1000);
  linkSync(join(lower, 'etc', 'notes'), join(lower, 'etc', 'notes-link'));
  linkSync(join(lower, 'etc', 'notes'), join(lower, 'bin', 'notes-link2'));
}

async function shiftOverlay(xino: 'off' | 'on', before: (merged: string) => void = () => {}): Promise<string> {
  const base = join(work, xino);
  const lowerFs = join(base, 'lowerfs');
  mkdirSync(lowerFs, { recursive: true });
  mount(['-t', 'tmpfs', 'lower'], lowerFs);
  buildLower(join(lowerFs, 'l'));
  for (const d of ['upper', 'work', 'merged']) mkdirSync(join(base, d));
  const merged = join(base, 'merged');
  mount(['-t', 'overlay', 'overlay', '-o', `lowerdir=${join(lowerFs, 'l')},upperdir=${join(base, 'upper')},workdir=${join(base, 'work')},index=off,xino=${xino}`], merged);
  before(merged);
  const stateDir = join(base, 'state');
  const result = await shiftTree({ rootfs: merged, uidMap: R, gidMap: R, unmapped: 'error', stateDir, batchSize: 3 });
  assert.ok(result.shifted);
  assert.equal(result.skippedMounts, [], 'no file taken for a mount point');
  return merged;
}

function checkEveryName(merged: string): void {
  const names = ['bin/ping', 'bin/ping-link', 'etc/shadow', 'etc/shadow-link', ...Array.from({ length: 20 }, (_, i) => `etc/plain${i}`)];
  for (const name of names) assert.is(`${lstatSync(join(merged, name)).uid}:${lstatSync(join(merged, name)).gid}`, '100000:100000', name);
  for (const name of ['etc/notes', 'etc/notes-link', 'bin/notes-link2']) assert.is(lstatSync(join(merged, name)).uid, 101000, name);
  for (const name of ['bin/ping', 'bin/ping-link']) assert.match(sh('getcap', ['-n', join(merged, name)]), 'cap_net_raw=ep [rootid=100000]', `${name} keeps its capability`);
  for (const name of ['etc/shadow', 'etc/shadow-link']) assert.match(sh('getfacl', ['-n', '-p', join(merged, name)]), 'user:101000:r--', `${name} has its ACL shifted`);
}

test.before(() => {
  work = mkdtempSync(join(tmpdir(), 'oci-userns-overlay-'));
  chmodSync(work, 0o755);
});
test.after(() => {
  for (const at of mounts.reverse()) sh('umount', [at]);
  rmSync(work, { recursive: true, force: true });
});

test('xino=off: files still in the lower layer (its device number) are shifted, and every name of a hard link', async () => {
  checkEveryName(await shiftOverlay('off'));
});

test('xino=on: inode numbers above 2^53 do not alias; every name of every hard link is shifted', async () => {
  const merged = await shiftOverlay('on', (m) => {
    // Node reads st_ino as a signed 64-bit number.
    const ino = BigInt.asUintN(64, lstatSync(join(m, 'etc', 'notes'), { bigint: true }).ino);
    assert.ok(ino > 2n ** 53n, `the lower layer's inode numbers carry layer bits above 2^53 (${ino})`);
  });
  checkEveryName(merged);
});

test.run();
