import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HostError, RefusedError } from '../../lib/errors';
import { checkStateDir, parseRegistry, readRegistry, registryPath, updateRegistry, type RangeEntry } from '../../lib/ranges/registry';
import { rejects } from '../helpers/assert-error';

const entry = (id: string, hostID: number): RangeEntry => ({
  id,
  uidMappings: [{ containerID: 0, hostID, size: 65536 }],
  gidMappings: [{ containerID: 0, hostID, size: 65536 }],
  since: '2026-01-01T00:00:00.000Z',
  source: 'cli',
});

const test = suite('registry file');
let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-registry-'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

test('a missing state directory is created 0700, owned by the user running oci-userns; reading one that does not exist yields nothing', async () => {
  const state = join(dir, 'a', 'state');
  assert.is(await checkStateDir(state, false), false);
  assert.is(await checkStateDir(state, true), true);
  assert.is(statSync(state).mode & 0o777, 0o700);
  assert.is(statSync(state).uid, process.geteuid?.());
  assert.equal(await readRegistry(state), []);
});

// A directory another user owns: as root, one given to uid 1000; as anyone
// else, the root directory (root's, mode 0755, and never written: the check
// refuses it before the lock).
function otherUsersDir(): [string, RegExp] {
  if (process.geteuid?.() !== 0) return ['/', new RegExp(`^state directory / is owned by uid 0, not uid ${process.geteuid?.()}, the user running oci-userns; set stateDir in the config file`)];
  const other = join(dir, 'other');
  mkdirSync(other, { mode: 0o700 });
  chownSync(other, 1000, 1000);
  return [other, /is owned by uid 1000, not root; chown root:root/];
}

test('refuses a symlink, a directory another user owns, and a group-writable one', async () => {
  const real = join(dir, 'real');
  mkdirSync(real, { mode: 0o700 });
  symlinkSync(real, join(dir, 'link'));
  const open = join(dir, 'open');
  mkdirSync(open);
  chmodSync(open, 0o775);
  for (const [path, pattern] of [
    [join(dir, 'link'), /is a symlink/],
    otherUsersDir(),
    [open, /is writable by group or others; chmod go-w/],
  ] as const) {
    await rejects(updateRegistry({ stateDir: path }, (entries) => ({ entries, result: undefined })), RefusedError, pattern);
  }
});

test('writes atomically: the document replaced, no temp file or lock left', async () => {
  await updateRegistry({ stateDir: dir }, () => ({ entries: [entry('a', 65536)], result: undefined }));
  await updateRegistry({ stateDir: dir }, (entries) => ({ entries: [...entries, entry('b', 131072)], result: undefined }));
  assert.equal((await readRegistry(dir)).map((e) => e.id), ['a', 'b']);
  assert.equal(readdirSync(dir), ['ranges.json']);
  assert.is(JSON.parse(readFileSync(registryPath(dir), 'utf8')).version, 1);
});

test('an unchanged document is not rewritten', async () => {
  await updateRegistry({ stateDir: dir }, () => ({ entries: [entry('a', 65536)], result: undefined }));
  const before = statSync(registryPath(dir)).ino;
  await updateRegistry({ stateDir: dir }, (entries) => ({ entries, result: undefined }));
  assert.is(statSync(registryPath(dir)).ino, before);
});

test('a corrupt registry is an error naming the file, kept as it was, with the repair command', async () => {
  for (const text of ['', '{"version":1,"entries":[{"id":"a"', '[]', '{"version":2,"entries":[]}', JSON.stringify({ version: 1, entries: [entry('a', 1), entry('a', 2)] })]) {
    writeFileSync(registryPath(dir), text);
    await rejects(updateRegistry({ stateDir: dir }, () => ({ entries: [], result: undefined })), HostError, new RegExp(`^registry ${registryPath(dir)} is corrupt: .*oci-userns gc --repair`));
    assert.is(readFileSync(registryPath(dir), 'utf8'), text);
  }
});

test('entries are checked field by field', () => {
  const bad = (e: unknown) => () => parseRegistry(JSON.stringify({ version: 1, entries: [e] }), 'R');
  assert.throws(bad({ ...entry('a', 0), source: 'nobody' }), /entry 0 \(a\): source must be one of/);
  assert.throws(bad({ ...entry('a', 0), since: 'yesterday' }), /since is not a date/);
  assert.throws(bad({ ...entry('a', 0), pid: '12' }), /pid is not an integer/);
  assert.throws(bad({ ...entry('a', 0), uidMappings: [] }), /uidMappings is not a non-empty list/);
  assert.throws(bad({ ...entry('a', 0), gidMappings: [{ containerID: 0, hostID: -1, size: 1 }] }), /hostID must be a non-negative integer/);
  assert.throws(bad({ id: '' }), /entry 0 has no id/);
  assert.equal(parseRegistry(JSON.stringify({ version: 1, entries: [entry('a', 0)] }), 'R'), [entry('a', 0)]);
});

test.run();
