import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nullLogger } from '../../lib/log/logger';
import { containerGone, preparedDir, recordPrepared } from '../../lib/shim/prepared';
import { statePaths } from '../../lib/shift/state';

const test = suite("prepared: the shim's record of a container it prepared, and its end");
let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-prepared-'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

test('a pod container: its rootfs\'s shift record goes with it; the directory is root\'s alone and goes too', async () => {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs);
  const shift = statePaths(dir, rootfs);
  mkdirSync(shift.dir, { recursive: true });
  writeFileSync(shift.state, '{}');
  writeFileSync(shift.journal, '');
  const record = recordPrepared(dir, 'app1', { forgetShift: rootfs });
  assert.is(record, join(dir, 'shim', 'app1'));
  assert.is(statSync(record).mode & 0o777, 0o700);
  assert.equal(await containerGone({ stateDir: dir, id: 'app1', logger: nullLogger }), []);
  assert.not.ok(existsSync(shift.state) || existsSync(shift.journal), 'the shift record is left');
  assert.not.ok(existsSync(record));
});
test('another container keeps its shift record; a container never recorded is no error', async () => {
  const rootfs = join(dir, 'rootfs');
  const shift = statePaths(dir, rootfs);
  mkdirSync(shift.dir, { recursive: true });
  writeFileSync(shift.state, '{}');
  recordPrepared(dir, 'plain', {});
  assert.equal(await containerGone({ stateDir: dir, id: 'plain', logger: nullLogger }), []);
  assert.equal(await containerGone({ stateDir: dir, id: 'never', logger: nullLogger }), []);
  assert.ok(existsSync(shift.state));
});
test('ids the front cannot name as a path are named by their hash, inside STATEDIR/shim', () => {
  for (const id of ['..', '.', 'a/b', '']) {
    const path = preparedDir(dir, id);
    assert.match(path, new RegExp(`^${join(dir, 'shim')}/[0-9a-f]{16}$`), id);
  }
  assert.is(preparedDir(dir, 'c-1.x_y+z'), join(dir, 'shim', 'c-1.x_y+z'));
});
test.run();
