import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RefusedError } from '../../lib/errors';
import { closedToOthers, maySearch, openPathToRootfs, pathAndAncestors, rawTreeAccess, readRawTreeAccess } from '../../lib/rootfs/access';
import { rejects } from '../helpers/assert-error';

const ROOT = { uid: 1879179264, gid: 1879179264 };

const search = suite('maySearch');
search('owner, group and other bits, by who the searcher is', () => {
  assert.ok(maySearch({ uid: 0, gid: 0, mode: 0o40701 }, ROOT));
  assert.not.ok(maySearch({ uid: 0, gid: 0, mode: 0o40700 }, ROOT));
  assert.ok(maySearch({ uid: ROOT.uid, gid: 0, mode: 0o40700 }, ROOT));
  assert.not.ok(maySearch({ uid: ROOT.uid, gid: 0, mode: 0o40601 }, ROOT), 'owner bits decide for the owner');
  assert.ok(maySearch({ uid: 0, gid: ROOT.gid, mode: 0o40710 }, ROOT));
});
search('pathAndAncestors lists from / down', () => {
  assert.equal(pathAndAncestors('/var/lib/x'), ['/', '/var', '/var/lib', '/var/lib/x']);
  assert.equal(pathAndAncestors('/'), ['/']);
});
search.run();

const open = suite('openPathToRootfs');
let dir = '';
open.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-rootfs-access-'));
  chmodSync(dir, 0o755);
});
open.after.each(() => rmSync(dir, { recursive: true, force: true }));
open('lets others search the rootfs parent (o+x only), once', async () => {
  mkdirSync(join(dir, 'layer', 'merged'), { recursive: true });
  chmodSync(join(dir, 'layer'), 0o700);
  assert.equal(await openPathToRootfs(join(dir, 'layer', 'merged'), ROOT), [join(dir, 'layer')]);
  assert.is(statSync(join(dir, 'layer')).mode & 0o7777, 0o701);
  assert.equal(await openPathToRootfs(join(dir, 'layer', 'merged'), ROOT), []);
});
open('refuses, changing nothing, when a directory above the parent blocks', async () => {
  mkdirSync(join(dir, 'private', 'bundle', 'rootfs'), { recursive: true });
  chmodSync(join(dir, 'private'), 0o700);
  chmodSync(join(dir, 'private', 'bundle'), 0o700);
  await rejects(
    openPathToRootfs(join(dir, 'private', 'bundle', 'rootfs'), ROOT, { containerId: 'c1' }),
    RefusedError,
    new RegExp(`${join(dir, 'private')} does not let it search; let others search it \\(chmod o\\+x`),
  );
  assert.is(statSync(join(dir, 'private', 'bundle')).mode & 0o7777, 0o700);
});
open.run();

const closed = suite('closedToOthers and rawTreeAccess: the safety rule of an idmapped rootfs');
const RANGE = [{ containerID: 0, hostID: 300000, size: 65536 }];
closed('closed: owned by root or the range, no search bit for group (the ACL mask) or others', () => {
  assert.ok(closedToOthers({ uid: 300000, mode: 0o40700 }, RANGE));
  assert.ok(closedToOthers({ uid: 0, mode: 0o40700 }, RANGE));
  assert.ok(closedToOthers({ uid: 300000, mode: 0o40500 }, RANGE));
  assert.not.ok(closedToOthers({ uid: 300000, mode: 0o40710 }, RANGE), 'group search, or an ACL mask that lets named entries through');
  assert.not.ok(closedToOthers({ uid: 300000, mode: 0o40701 }, RANGE));
  assert.not.ok(closedToOthers({ uid: 1000, mode: 0o40700 }, RANGE), 'another host user owns it and can open it');
  assert.not.ok(closedToOthers({ uid: 365536, mode: 0o40700 }, RANGE), 'just past the range');
});
let tree = '';
closed.before.each(() => {
  tree = mkdtempSync(join(tmpdir(), 'oci-userns-closed-'));
  chmodSync(tree, 0o755);
});
closed.after.each(() => rmSync(tree, { recursive: true, force: true }));
// One ext4 at /, as seen by a process whose mountinfo is written here.
const mountinfo = (...lines: string[]) => {
  const path = join(tree, 'mountinfo');
  writeFileSync(path, ['22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw', ...lines].map((l) => `${l}\n`).join(''));
  return path;
};
closed('the first closed directory above the rootfs, or where the raw tree is open', async () => {
  // The current user stands for the range, so this runs without root.
  const range = [{ containerID: 0, hostID: process.getuid!(), size: 1 }];
  const rootfs = join(tree, 'bundle', 'rootfs');
  mkdirSync(rootfs, { recursive: true, mode: 0o755 });
  chmodSync(join(tree, 'bundle'), 0o755);
  const opts = { mountinfoPath: mountinfo() };
  assert.equal(await readRawTreeAccess(rootfs, range, opts), { openAt: rootfs }, 'tmpdir is 1777 and everything below 0755');
  chmodSync(rootfs, 0o700);
  assert.equal(await readRawTreeAccess(rootfs, range, opts), { openAt: rootfs }, "the rootfs itself does not count: it is the image's /");
  chmodSync(join(tree, 'bundle'), 0o700);
  assert.equal(await readRawTreeAccess(rootfs, range, opts), { closedBy: join(tree, 'bundle') });
});
closed('a bind mount of the rootfs under an open directory opens the raw tree; an idmapped one or one hidden by a later mount does not', async () => {
  const range = [{ containerID: 0, hostID: process.getuid!(), size: 1 }];
  const rootfs = join(tree, 'bundle', 'rootfs');
  const view = join(tree, 'open', 'view');
  mkdirSync(rootfs, { recursive: true, mode: 0o755 });
  mkdirSync(view, { recursive: true, mode: 0o755 });
  chmodSync(join(tree, 'bundle'), 0o700);
  chmodSync(join(tree, 'open'), 0o755);
  const bind = `40 22 8:1 ${rootfs} ${view} rw - ext4 /dev/sda1 rw`;
  assert.equal(await readRawTreeAccess(rootfs, range, { mountinfoPath: mountinfo(bind) }), { openAt: view });
  const binOnly = `41 22 8:1 ${rootfs}/bin ${view} rw - ext4 /dev/sda1 rw`;
  assert.equal(await readRawTreeAccess(rootfs, range, { mountinfoPath: mountinfo(binOnly) }), { openAt: view }, 'a part of the tree');
  const idmapped = `42 22 8:1 ${rootfs} ${view} rw,idmapped - ext4 /dev/sda1 rw`;
  assert.equal(await readRawTreeAccess(rootfs, range, { mountinfoPath: mountinfo(idmapped) }), { closedBy: join(tree, 'bundle') });
  const elsewhere = `43 22 8:1 ${rootfs} ${join(tree, 'open', 'gone')} rw - ext4 /dev/sda1 rw`;
  assert.equal(await readRawTreeAccess(rootfs, range, { mountinfoPath: mountinfo(elsewhere) }), { closedBy: join(tree, 'bundle') }, 'a mount point that no longer shows (hidden)');
  chmodSync(join(tree, 'open'), 0o700);
  assert.equal(await readRawTreeAccess(rootfs, range, { mountinfoPath: mountinfo(bind) }), { closedBy: join(tree, 'bundle') }, 'the bind is behind a closed directory too');
});
closed('rawTreeAccess: every exposure needs a closed directory above it (pure)', () => {
  const range = [{ containerID: 0, hostID: 300000, size: 65536 }];
  const dirs = new Map([
    ['/', { uid: 0, mode: 0o40755 }],
    ['/closed', { uid: 0, mode: 0o40700 }],
    ['/open', { uid: 0, mode: 0o40755 }],
    ['/ranged', { uid: 300000, mode: 0o40700 }],
  ]);
  assert.equal(rawTreeAccess('/closed/rootfs', [], dirs, range), { closedBy: '/closed' });
  assert.equal(rawTreeAccess('/closed/rootfs', ['/ranged/view'], dirs, range), { closedBy: '/closed' });
  assert.equal(rawTreeAccess('/closed/rootfs', ['/ranged/view', '/open/rootfs'], dirs, range), { openAt: '/open/rootfs' });
  assert.equal(rawTreeAccess('/closed/rootfs', ['/unknown/x'], dirs, range), { openAt: '/unknown/x' }, 'no facts: open');
  assert.equal(rawTreeAccess('/open/rootfs', ['/closed/view'], dirs, range), { openAt: '/open/rootfs' });
});
closed.run();
