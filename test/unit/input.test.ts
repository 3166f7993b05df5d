import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError, RefusedError } from '../../lib/errors';
import { readFileInside, readStreamBounded } from '../../lib/input';

const limits = { maxBytes: 64, timeoutMs: 200, what: 'state on stdin' };

const stream = suite('readStreamBounded');
stream('returns what the stream held', async () => {
  const s = new PassThrough();
  s.end('{"id":"x"}');
  assert.is((await readStreamBounded(s, limits)).toString(), '{"id":"x"}');
});
stream('fails on input larger than the limit', async () => {
  const s = new PassThrough();
  s.write('x'.repeat(40));
  s.write('x'.repeat(40));
  try {
    await readStreamBounded(s, limits);
    assert.unreachable();
  } catch (error) {
    assert.instance(error, InputError);
    assert.match((error as Error).message, 'state on stdin is larger than 64 bytes');
  }
});
stream('fails when the stream never ends', async () => {
  const s = new PassThrough();
  s.write('{');
  const started = Date.now();
  try {
    await readStreamBounded(s, limits);
    assert.unreachable();
  } catch (error) {
    assert.instance(error, InputError);
    assert.match((error as Error).message, 'did not end within 200 ms');
  }
  assert.ok(Date.now() - started < 2000);
});
stream.run();

const files = suite('readFileInside');
let dir = '';
files.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-input-'));
  mkdirSync(join(dir, 'bundle'));
});
files.after.each(() => rmSync(dir, { recursive: true, force: true }));

const rejects = async (promise: Promise<unknown>, type: Function, pattern: RegExp) => {
  try {
    await promise;
    assert.unreachable('expected an error');
  } catch (error) {
    assert.instance(error, type);
    assert.match((error as Error).message, pattern);
  }
};

files('reads a file in the bundle', async () => {
  writeFileSync(join(dir, 'bundle', 'config.json'), '{}');
  assert.is((await readFileInside(join(dir, 'bundle'), 'config.json', 100)).toString(), '{}');
});
files('follows a symlink that stays inside', async () => {
  writeFileSync(join(dir, 'bundle', 'real.json'), '{"a":1}');
  symlinkSync('real.json', join(dir, 'bundle', 'config.json'));
  assert.is((await readFileInside(join(dir, 'bundle'), 'config.json', 100)).toString(), '{"a":1}');
});
files('refuses a symlink out of the bundle', async () => {
  writeFileSync(join(dir, 'outside.json'), '{}');
  symlinkSync('../outside.json', join(dir, 'bundle', 'config.json'));
  await rejects(readFileInside(join(dir, 'bundle'), 'config.json', 100), RefusedError, /outside the bundle/);
});
files('missing bundle, missing file, directory, too large', async () => {
  await rejects(readFileInside(join(dir, 'nope'), 'config.json', 100), InputError, /bundle .*nope does not exist/);
  await rejects(readFileInside(join(dir, 'bundle'), 'config.json', 100), InputError, /config.json does not exist/);
  mkdirSync(join(dir, 'bundle', 'config.json'));
  await rejects(readFileInside(join(dir, 'bundle'), 'config.json', 100), InputError, /not a regular file/);
  rmSync(join(dir, 'bundle', 'config.json'), { recursive: true });
  writeFileSync(join(dir, 'bundle', 'config.json'), 'x'.repeat(101));
  await rejects(readFileInside(join(dir, 'bundle'), 'config.json', 100), InputError, /larger than 100 bytes/);
});
files.run();
