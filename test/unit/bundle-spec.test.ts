import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { pathHash } from '../../lib/sys/path-key';
import { nullLogger } from '../../lib/log/logger';
import { leaseBundleSpec } from '../../lib/shim/bundle-spec';

const test = suite('bundle-spec: config.json lent to one container at a time, then the caller\'s again');
let dir = '';
let spec = '';
let stateDir = '';
const ORIGINAL = '{"ociVersion":"1.0.2","note":"the caller\'s"}\n';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-bundle-spec-'));
  spec = join(dir, 'config.json');
  stateDir = join(dir, 'state');
  mkdirSync(stateDir, { mode: 0o700 });
  writeFileSync(spec, ORIGINAL);
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

const lease = () => leaseBundleSpec({ specPath: spec, stateDir, logger: nullLogger, read: () => readFileSync(spec) });

test('lend puts the container\'s spec in place; giveBack puts the caller\'s bytes back', async () => {
  const held = await lease();
  assert.is(held.original.toString(), ORIGINAL);
  await held.lend('{"container":"a"}', 'a');
  assert.is(readFileSync(spec, 'utf8'), '{"container":"a"}');
  await held.giveBack();
  assert.is(readFileSync(spec, 'utf8'), ORIGINAL);
  await held.giveBack();
});
test('a second create from the bundle waits for the first to give it back, and reads the caller\'s spec', async () => {
  const first = await lease();
  await first.lend('{"container":"a"}', 'a');
  let secondRead: string | undefined;
  const second = lease().then((l) => {
    secondRead = l.original.toString();
    return l;
  });
  await new Promise((r) => setTimeout(r, 100));
  assert.is(secondRead, undefined, 'the second lease did not wait');
  await first.giveBack();
  await (await second).giveBack();
  assert.is(secondRead, ORIGINAL);
});
test('a spec left lent by a shim that died is put back before anything reads it', async () => {
  const key = pathHash(spec);
  mkdirSync(join(stateDir, 'lent'));
  writeFileSync(join(stateDir, 'lent', `${key}.json`), ORIGINAL);
  writeFileSync(spec, '{"container":"dead"}');
  const held = await lease();
  assert.is(held.original.toString(), ORIGINAL);
  assert.is(readFileSync(spec, 'utf8'), ORIGINAL);
  await held.giveBack();
});
test.run();
