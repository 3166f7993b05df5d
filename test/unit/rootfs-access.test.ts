import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RefusedError } from '../../lib/errors';
import { closedAncestor, closedToOthers, maySearch, openPathToRootfs, pathAndAncestors } from '../../lib/rootfs/access';
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

const closed = suite('closedToOthers and closedAncestor: the safety rule of an idmapped rootfs');
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
closed('the first closed directory above the rootfs, or undefined when the way is open', async () => {
  // The current user stands for the range, so this runs without root.
  const range = [{ containerID: 0, hostID: process.getuid!(), size: 1 }];
  const rootfs = join(tree, 'bundle', 'rootfs');
  mkdirSync(rootfs, { recursive: true, mode: 0o755 });
  chmodSync(join(tree, 'bundle'), 0o755);
  assert.is(await closedAncestor(rootfs, range), undefined, 'tmpdir is 1777 and everything below 0755');
  chmodSync(rootfs, 0o700);
  assert.is(await closedAncestor(rootfs, range), undefined, 'the rootfs itself does not count: it is the image\'s /');
  chmodSync(join(tree, 'bundle'), 0o700);
  assert.is(await closedAncestor(rootfs, range), join(tree, 'bundle'));
});
closed.run();
