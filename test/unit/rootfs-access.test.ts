import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RefusedError } from '../../lib/errors';
import { maySearch, openPathToRootfs, pathAndAncestors } from '../../lib/rootfs/access';
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
