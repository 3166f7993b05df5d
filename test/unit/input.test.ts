import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError, RefusedError } from '../../lib/errors';
import { readFileInside, readStdinBounded, readStreamBounded } from '../../lib/oci/input';
import { execFileSync } from 'node:child_process';
import { rejects } from '../helpers/assert-error';

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
  await rejects(readStreamBounded(s, limits), InputError, 'state on stdin is larger than 64 bytes');
});
stream('fails when the stream never ends', async () => {
  const s = new PassThrough();
  s.write('{');
  const started = Date.now();
  await rejects(readStreamBounded(s, limits), InputError, 'did not end within 200 ms');
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

files('reads a file in the bundle', () => {
  writeFileSync(join(dir, 'bundle', 'config.json'), '{}');
  assert.is((readFileInside(join(dir, 'bundle'), 'config.json', 100)).toString(), '{}');
});
files('follows a symlink that stays inside', () => {
  writeFileSync(join(dir, 'bundle', 'real.json'), '{"a":1}');
  symlinkSync('real.json', join(dir, 'bundle', 'config.json'));
  assert.is((readFileInside(join(dir, 'bundle'), 'config.json', 100)).toString(), '{"a":1}');
});
files('refuses a symlink out of the bundle', async () => {
  writeFileSync(join(dir, 'outside.json'), '{}');
  symlinkSync('../outside.json', join(dir, 'bundle', 'config.json'));
  await rejects(() => readFileInside(join(dir, 'bundle'), 'config.json', 100), RefusedError, /outside the bundle/);
});
files('missing bundle, missing file, directory, too large', async () => {
  await rejects(() => readFileInside(join(dir, 'nope'), 'config.json', 100), InputError, /bundle .*nope does not exist/);
  await rejects(() => readFileInside(join(dir, 'bundle'), 'config.json', 100), InputError, /config.json does not exist/);
  mkdirSync(join(dir, 'bundle', 'config.json'));
  await rejects(() => readFileInside(join(dir, 'bundle'), 'config.json', 100), InputError, /not a regular file/);
  rmSync(join(dir, 'bundle', 'config.json'), { recursive: true });
  writeFileSync(join(dir, 'bundle', 'config.json'), 'x'.repeat(101));
  await rejects(() => readFileInside(join(dir, 'bundle'), 'config.json', 100), InputError, /larger than 100 bytes/);
});
files.run();

const stdin = suite('readStdinBounded reads a descriptor without blocking past the timeout');
let fifoDir = '';
stdin.before.each(() => {
  fifoDir = mkdtempSync(join(tmpdir(), 'oci-userns-stdin-'));
});
stdin.after.each(() => rmSync(fifoDir, { recursive: true, force: true }));
stdin('a file is read to its end', async () => {
  writeFileSync(join(fifoDir, 'state'), '{"id":"x"}');
  assert.is((await readStdinBounded(limits, {}, join(fifoDir, 'state')))?.toString(), '{"id":"x"}');
});
stdin('a pipe whose writer never closes times out, and the process is not held', async () => {
  const fifo = join(fifoDir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  // Holding a write end open without writing, as a stuck runtime would.
  const writer = openSync(fifo, 'r+');
  try {
    const started = Date.now();
    await rejects(readStdinBounded(limits, {}, fifo), InputError, 'did not end within 200 ms');
    assert.ok(Date.now() - started < 2000);
  } finally {
    closeSync(writer);
  }
});
stdin('too much input', async () => {
  writeFileSync(join(fifoDir, 'big'), 'x'.repeat(100));
  await rejects(readStdinBounded(limits, {}, join(fifoDir, 'big')), InputError, 'larger than 64 bytes');
});
stdin('a descriptor that cannot be reopened gives undefined (the caller falls back to the stream)', async () => {
  assert.is(await readStdinBounded(limits, {}, join(fifoDir, 'absent')), undefined);
});
stdin.run();
