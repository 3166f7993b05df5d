import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SystemError } from '../../lib/errors';
import { replaceFileAtomic, writeFileAtomic } from '../../lib/sys/atomic-file';
import { rejects } from '../helpers/assert-error';

const test = suite('atomic file replacement');
let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-atomic-'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

const temp = (name: string) => join(dir, `.${name}.oci-userns-${process.pid}.tmp`);

test('creates with the given mode (past the umask), then replaces; no temp file left', () => {
  const path = join(dir, 'ranges.json');
  writeFileAtomic(path, 'one\n', { mode: 0o644 });
  assert.is(statSync(path).mode & 0o7777, 0o644);
  writeFileAtomic(path, Buffer.from('two\n'), { mode: 0o600 });
  assert.is(readFileSync(path, 'utf8'), 'two\n');
  assert.is(statSync(path).mode & 0o7777, 0o600);
  assert.equal(readdirSync(dir), ['ranges.json']);
});

test("'replace' keeps the mode of the file it replaces and refuses a missing one", async () => {
  const path = join(dir, 'config.json');
  writeFileSync(path, '{}');
  chmodSync(path, 0o640);
  await replaceFileAtomic(path, '{"a":1}\n');
  assert.is(statSync(path).mode & 0o7777, 0o640);
  assert.is(readFileSync(path, 'utf8'), '{"a":1}\n');
  await rejects(() => writeFileAtomic(join(dir, 'nope.json'), 'x', { existing: 'replace' }), SystemError, /^cannot stat .*nope\.json: ENOENT$/);
  assert.not.ok(existsSync(join(dir, 'nope.json')));
  await replaceFileAtomic(path, '{"lent":1}\n', {}, { durable: false });
  assert.equal([readFileSync(path, 'utf8'), statSync(path).mode & 0o7777, readdirSync(dir)], ['{"lent":1}\n', 0o640, ['config.json']], 'durable: false is as atomic, only not fsynced');
});

test('a temp file a killed writer with our pid left is replaced; a symlink planted there is not written through', () => {
  const path = join(dir, 'state.json');
  writeFileSync(temp('state.json'), 'leftover');
  writeFileAtomic(path, 'new');
  assert.is(readFileSync(path, 'utf8'), 'new');
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'keep');
  symlinkSync(victim, temp('state.json'));
  writeFileAtomic(path, 'newer');
  assert.is(readFileSync(victim, 'utf8'), 'keep');
  assert.is(readFileSync(path, 'utf8'), 'newer');
});

test('a failure names the operation and the file', async () => {
  const path = join(dir, 'ranges.json');
  writeFileAtomic(path, 'old');
  // A directory where the temp file goes: open fails.
  rmSync(dir, { recursive: true });
  await rejects(() => writeFileAtomic(path, 'new', { operation: 'cannot write the registry' }), SystemError, `cannot write the registry ${path}: ENOENT`);
});

test.run();
