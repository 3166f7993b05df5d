import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chownSync, lchownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../lib/errors';
import { highestIds } from '../../lib/rootfs/owners';
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

owned.run();
