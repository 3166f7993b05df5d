import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RefusedError } from '../../lib/errors';
import { IDENTITY, parseIdMap } from '../../lib/oci/idmap';
import { claimRootfsOwners, guardContainer, releaseContainer } from '../../lib/ranges/ranges';
import { readRegistry, writeRegistry, type RangeEntry } from '../../lib/ranges/registry';
import { refuseRootfsInUse, refuseRootfsInUseNow } from '../../lib/ranges/rootfs-users';
import { rejects } from '../helpers/assert-error';

const X = parseIdMap('0:100000:65536');
const Y = parseIdMap('0:300000:65536');
// No pid recorded: allocated and not started yet, which counts as live.
const a: RangeEntry = { id: 'a', uidMappings: X, gidMappings: X, since: '2026-01-01T00:00:00Z', source: 'external', rootfs: '/srv/r' };

const test = suite('a rootfs in use by a live container is not shifted to other ids');
test('another container on the same tree with other ids is refused, naming the one using it', async () => {
  const { message } = await rejects(refuseRootfsInUse([a], { id: 'b', rootfs: '/srv/r', uidMappings: Y, gidMappings: Y }), RefusedError, 'in use by container a');
  assert.match(message, 'for container b');
  await rejects(refuseRootfsInUse([a], { rootfs: '/srv/r', uidMappings: IDENTITY, gidMappings: IDENTITY }), RefusedError, 'its original owners');
});
test('the same ids, another tree, the container itself, or a container whose process is gone: no refusal', async () => {
  await refuseRootfsInUse([a], { id: 'b', rootfs: '/srv/r', uidMappings: X, gidMappings: X });
  await refuseRootfsInUse([a], { id: 'b', rootfs: '/srv/other', uidMappings: Y, gidMappings: Y });
  await refuseRootfsInUse([a], { id: 'a', rootfs: '/srv/r', uidMappings: Y, gidMappings: Y });
  await refuseRootfsInUse([{ ...a, pid: 2 ** 22 + 1 }], { id: 'b', rootfs: '/srv/r', uidMappings: Y, gidMappings: Y });
});
test('compared by tree when both know theirs: another path to the same tree is the same rootfs', async () => {
  const tree = { ...a, rootfs: '/var/lib/oci-userns/rootfs/a/root', rootfsTree: '8:2:/b/rootfs' };
  await rejects(refuseRootfsInUse([tree], { rootfs: '/srv/b/rootfs', tree: '8:2:/b/rootfs', uidMappings: Y, gidMappings: Y }), RefusedError, 'through /var/lib/oci-userns/rootfs/a/root');
  await refuseRootfsInUse([tree], { rootfs: '/var/lib/oci-userns/rootfs/a/root', tree: '8:2:/other', uidMappings: Y, gidMappings: Y });
  await rejects(refuseRootfsInUse([a], { rootfs: '/srv/r', tree: '8:2:/r', uidMappings: Y, gidMappings: Y }), RefusedError, 'in use by container a'); // an entry without a tree: by path
});
test('idmapped containers share a tree whatever their ranges; a shift, or an idmapped container on a shifted tree, is refused', async () => {
  const viaIdmap: RangeEntry = { ...a, rootfsIdmapped: true };
  await refuseRootfsInUse([viaIdmap], { id: 'b', rootfs: '/srv/r', uidMappings: Y, gidMappings: Y, idmapped: true });
  await refuseRootfsInUse([viaIdmap], { rootfs: '/srv/r', uidMappings: IDENTITY, gidMappings: IDENTITY }); // an unshift leaves it as it is
  await rejects(refuseRootfsInUse([viaIdmap], { id: 'b', rootfs: '/srv/r', uidMappings: Y, gidMappings: Y }), RefusedError, 'in use by container a (idmapped): shifting it to uids 0:300000:65536 for container b');
  await rejects(refuseRootfsInUse([viaIdmap], { id: 'b', rootfs: '/srv/r', uidMappings: X, gidMappings: X }), RefusedError, 'in use by container a (idmapped)'); // even to its own range: the mount would then map the shifted ids a second time
  await rejects(refuseRootfsInUse([a], { id: 'b', rootfs: '/srv/r', uidMappings: Y, gidMappings: Y, idmapped: true }), RefusedError, 'in use by container a (uids 0:100000:65536): an idmapped mount for container b');
});
test.run();

// The registry as the shim's directory route leaves it: the hook guards the
// container through its idmapped mount; `oci-userns shift` names the raw
// tree, or a bind of it.
const registry = suite('the registry records the tree, and shift/unshift compare it');
let dir = '';
registry.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-rootfs-users-'));
  mkdirSync(join(dir, 'proc'));
  writeFileSync(
    join(dir, 'mountinfo'),
    [
      '22 1 8:1 / / rw - ext4 /dev/sda1 rw',
      '30 22 8:2 / /srv rw - ext4 /dev/sdb1 rw',
      '31 22 8:2 /b/rootfs /state/rootfs/a/root rw,idmapped - ext4 /dev/sdb1 rw',
      '32 22 8:2 /b/rootfs /mnt/view rw - ext4 /dev/sdb1 rw',
    ].join('\n'),
  );
});
registry.after.each(() => rmSync(dir, { recursive: true, force: true }));
registry('a container guarded through the idmapped mount holds the raw tree and its binds', async () => {
  const stateDir = join(dir, 'state');
  const mountinfoPath = join(dir, 'mountinfo');
  await guardContainer({ stateDir, procRoot: join(dir, 'proc'), storageRoots: [], mountinfoPath, id: 'a', uidMappings: X, gidMappings: X, source: 'shim', overlap: 'refuse', rootfs: '/state/rootfs/a/root' });
  const [entry] = await readRegistry(stateDir);
  assert.is(entry?.rootfs, '/state/rootfs/a/root', 'the path stays for people');
  assert.is(entry?.rootfsTree, '8:2:/b/rootfs');
  for (const rootfs of ['/srv/b/rootfs', '/mnt/view']) {
    await rejects(refuseRootfsInUseNow(stateDir, { rootfs, uidMappings: Y, gidMappings: Y }, { mountinfoPath }), RefusedError, 'in use by container a');
  }
  await refuseRootfsInUseNow(stateDir, { rootfs: '/srv/b/other', uidMappings: Y, gidMappings: Y }, { mountinfoPath });
});
registry('idmapped containers register on one tree with their own ranges; one that comes to own the raw tree after all claims it, refused while another uses it', async () => {
  const stateDir = join(dir, 'state');
  const common = { stateDir, procRoot: join(dir, 'proc'), storageRoots: [], mountinfoPath: join(dir, 'mountinfo'), source: 'shim' as const, overlap: 'refuse' as const };
  await guardContainer({ ...common, id: 'a', uidMappings: X, gidMappings: X, rootfs: '/srv/b/rootfs', rootfsIdmapped: true });
  await guardContainer({ ...common, id: 'b', uidMappings: Y, gidMappings: Y, rootfs: '/state/rootfs/a/root', rootfsIdmapped: true });
  await guardContainer({ ...common, id: 'b', uidMappings: Y, gidMappings: Y, rootfs: '/state/rootfs/a/root' });
  assert.equal((await readRegistry(stateDir)).map((e) => [e.id, e.rootfsIdmapped]), [['a', true], ['b', true]], 'a guard that changes nothing keeps the mark');
  await rejects(guardContainer({ ...common, id: 'c', uidMappings: Y, gidMappings: Y, rootfs: '/mnt/view', rootfsIdmapped: false }), RefusedError, 'in use by container a (idmapped, through /srv/b/rootfs), b (idmapped');
  await rejects(claimRootfsOwners({ ...common, id: 'b' }), RefusedError, 'in use by container a (idmapped');
  assert.is((await readRegistry(stateDir)).find((e) => e.id === 'b')?.rootfsIdmapped, true, 'a refused claim changes nothing');
  await releaseContainer({ ...common, id: 'a' });
  await claimRootfsOwners({ ...common, id: 'b' });
  const [b] = await readRegistry(stateDir);
  assert.equal([b?.id, b?.rootfsIdmapped], ['b', undefined]);
  await rejects(guardContainer({ ...common, id: 'd', uidMappings: X, gidMappings: X, rootfs: '/srv/b/rootfs', rootfsIdmapped: true }), RefusedError, 'in use by container b (uids 0:300000:65536');
});
registry('a container run again on a tree now shifted into its range (the hook skips it) owns the raw tree: the idmapped mark of its earlier run, whose process is gone, does not stay', async () => {
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir, { mode: 0o700 });
  // Its earlier run saw the tree through an idmapped mount and ended without a poststop (a reboot); the tree was then shifted into its range (oci-userns shift).
  writeRegistry(stateDir, [{ id: 'e', uidMappings: X, gidMappings: X, since: '2026-01-01T00:00:00Z', source: 'external', pid: 2 ** 22 + 1, rootfs: '/srv/b/rootfs', rootfsTree: '8:2:/b/rootfs', rootfsIdmapped: true }]);
  // Its next run: the plan skips the tree ('already shifted'), so the guard gets no rootfsIdmapped.
  await guardContainer({ stateDir, procRoot: '/proc', storageRoots: [], mountinfoPath: join(dir, 'mountinfo'), id: 'e', uidMappings: X, gidMappings: X, source: 'external', overlap: 'refuse', pid: process.pid, rootfs: '/srv/b/rootfs' });
  assert.is((await readRegistry(stateDir))[0]?.rootfsIdmapped, undefined, 'the container owns the tree in its range now');
  await rejects(refuseRootfsInUseNow(stateDir, { rootfs: '/srv/b/rootfs', uidMappings: IDENTITY, gidMappings: IDENTITY }, { mountinfoPath: join(dir, 'mountinfo') }), RefusedError, 'in use by container e');
});
registry.run();
