import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chownSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../lib/errors';
import { highestIds, idsForTree, pruneLayerMeasures } from '../../lib/rootfs/owners';
import { rejects } from '../helpers/assert-error';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

const anyone = suite('highest owners of a rootfs');
let work = '';
anyone.before.each(() => {
  work = mkdtempSync(join(tmpdir(), 'oci-userns-owners-'));
});
anyone.after.each(() => rmSync(work, { recursive: true, force: true }));

anyone('counts every inode below the top directory, without following symlinks', async () => {
  mkdirSync(join(work, 'etc'));
  writeFileSync(join(work, 'etc/passwd'), '');
  symlinkSync('/usr', join(work, 'usr'));
  const ids = await highestIds(work);
  assert.is(ids.entries, 4);
  assert.is(ids.highestUid, process.getuid!());
});

anyone('a missing rootfs or a file is an InputError', async () => {
  writeFileSync(join(work, 'file'), '');
  await rejects(highestIds(join(work, 'missing')), InputError, 'does not exist');
  await rejects(highestIds(join(work, 'file')), InputError, 'is not a directory');
});

anyone.run();

const owned = skippedUnless(suite('highest owners, with owners set by chown'), 'owners unit', rootSkipReason());
owned.before.each(() => {
  work = mkdtempSync(join(tmpdir(), 'oci-userns-owners-'));
});
owned.after.each(() => rmSync(work, { recursive: true, force: true }));

owned('a file owned by uid 99999 under a name that is not UTF-8 counts (issue 14, 8)', async () => {
  const name = Buffer.concat([Buffer.from(`${work}/caf`), Buffer.from([0xe9])]);
  writeFileSync(name, '');
  chownSync(name, 99999, 88888);
  const ids = await highestIds(work);
  assert.equal([ids.highestUid, ids.highestGid, ids.entries], [99999, 88888, 2]);
});

owned('the top directory gives rootUid/rootGid; a symlink counts by its own owner', async () => {
  chownSync(work, 100000, 100000);
  symlinkSync('/', join(work, 'link'));
  lchownSync(join(work, 'link'), 165535, 100000);
  const ids = await highestIds(work);
  assert.equal([ids.rootUid, ids.rootGid, ids.highestUid, ids.highestGid], [100000, 100000, 165535, 100000]);
});

const overlay = skippedUnless(suite('ids an overlay rootfs needs: each lower layer measured once'), 'owners unit', rootSkipReason());
overlay.before.each(() => {
  work = mkdtempSync(join(tmpdir(), 'oci-userns-owners-'));
});
overlay.after.each(() => rmSync(work, { recursive: true, force: true }));

overlay('the highest owner of the upper and lower layers; a committed layer (containers/storage, containerd) is walked again only when it is another directory', async () => {
  const [rootfs, upper, lower1, lower2, state] = ['merged', 'upper', 'overlay/3f2a/diff', 'snapshots/17/fs', 'state'].map((d) => join(work, d));
  for (const dir of [rootfs, upper, lower1, lower2]) mkdirSync(dir, { recursive: true });
  const file = (dir: string, owner: number) => {
    const path = join(dir, `f${owner}`);
    writeFileSync(path, '');
    chownSync(path, owner, owner);
  };
  file(lower1, 70000);
  file(lower2, 1000);
  const mountinfo = join(work, 'mountinfo');
  // containers/storage names lower layers by symlinks (overlay/l/ID -> ../ID/diff).
  symlinkSync(lower1, join(work, 'l1-link'));
  writeFileSync(mountinfo, `100 1 0:50 / ${rootfs} rw,relatime - overlay overlay rw,lowerdir=${join(work, 'l1-link')}:${lower2},upperdir=${upper},workdir=${join(work, 'work')}\n`);
  const ids = () => idsForTree(rootfs, { stateDir: state, mountinfoPath: mountinfo });
  assert.is(await ids(), 70001);
  file(lower2, 90000);
  assert.is(await ids(), 70001, 'a committed layer is not walked again (the engines never change one)');
  file(upper, 80000);
  assert.is(await ids(), 80001, 'the upper directory, the container\'s own, is walked each time');
  rmSync(lower2, { recursive: true });
  mkdirSync(lower2);
  file(lower2, 90000);
  assert.is(await ids(), 90001, 'a layer made again at the same path is measured again');
  assert.is(await idsForTree(rootfs), 1, 'without a state directory: the tree itself is walked (here an empty directory)');
  chownSync(rootfs, 100000, 100000);
  assert.is(await ids(), undefined, 'a tree owned by a range at its top looks shifted already');
});

overlay("a lower directory kept up to date by hand (podman --rootfs DIR:O: 'the rootfs of the container is assumed to be managed externally') is measured again when a file in it changes owner", async () => {
  const [rootfs, upper, lower, state] = ['merged', 'upper', 'rootfs-dir', 'state'].map((d) => join(work, d));
  for (const dir of [rootfs, upper, lower]) mkdirSync(dir);
  writeFileSync(join(lower, 'passwd'), '');
  const mountinfo = join(work, 'mountinfo');
  writeFileSync(mountinfo, `100 1 0:50 / ${rootfs} rw,relatime - overlay overlay rw,lowerdir=${lower},upperdir=${upper},workdir=${join(work, 'work')}\n`);
  const ids = () => idsForTree(rootfs, { stateDir: state, mountinfoPath: mountinfo });
  assert.is(await ids(), 1);
  mkdirSync(join(lower, 'home'));
  chownSync(join(lower, 'home'), 70000, 70000);
  assert.is(await ids(), 70001, 'a range of 1 id for a tree with a file of uid 70000: the shift refuses, or the idmapped file shows as nobody');
});

overlay('gc drops the measures of layers removed or made again, and keeps the others', async () => {
  const [rootfs, upper, kept, gone, state] = ['merged', 'upper', 'overlay/aa/diff', 'overlay/bb/diff', 'state'].map((d) => join(work, d));
  for (const d of [rootfs, upper, kept, gone]) mkdirSync(d, { recursive: true });
  const mountinfo = join(work, 'mountinfo');
  writeFileSync(mountinfo, `100 1 0:50 / ${rootfs} rw,relatime - overlay overlay rw,lowerdir=${kept}:${gone},upperdir=${upper},workdir=${join(work, 'work')}\n`);
  await idsForTree(rootfs, { stateDir: state, mountinfoPath: mountinfo });
  assert.is(readdirSync(join(state, 'layer-owners')).length, 2);
  assert.is(pruneLayerMeasures(state), 0, 'both layers are there');
  rmSync(gone, { recursive: true });
  writeFileSync(join(state, 'layer-owners', 'cut-short.json'), '{"pa');
  assert.is(pruneLayerMeasures(state), 2, 'the removed layer\'s measure and a record cut short');
  assert.is(readdirSync(join(state, 'layer-owners')).length, 1);
  assert.is(pruneLayerMeasures(join(work, 'no-state')), 0);
});
overlay.run();

owned.run();
