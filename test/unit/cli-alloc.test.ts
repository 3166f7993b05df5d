import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs from 'yargs';
import { suite, type Test } from 'uvu';
import * as assert from 'uvu/assert';
import alloc, { requestedSize } from '../../cli/alloc';
import gc from '../../cli/gc';
import ranges, { formatRangesTable } from '../../cli/ranges';
import release from '../../cli/release';
import { closeLoggers } from '../../cli/context';
import { InputError } from '../../lib/errors';
import type { RangeEntry } from '../../lib/ranges/registry';
import { rejects } from '../helpers/assert-error';
import { rootSkipReason, skippedUnless, storageSkipReason } from '../helpers/skip';

const B = 65536;
let dir = '';
let config = '';

/** Runs one command as the CLI would, returning what it printed. */
async function run(...argv: string[]): Promise<string> {
  let out = '';
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stdout.write;
  try {
    await yargs([...argv, '--config', config])
      .option('config', { type: 'string', global: true })
      .option('json', { type: 'boolean', global: true })
      .command([alloc, release, ranges, gc])
      .strict()
      .exitProcess(false)
      .fail((message, error) => {
        throw error ?? new Error(message);
      })
      .parseAsync();
  } finally {
    process.stdout.write = write;
    await closeLoggers();
  }
  return out;
}

const fails = (argv: string[], pattern: RegExp) => rejects(run(...argv), Error, pattern);

/** A temp folder with a pool of 4 blocks and a config naming it, for each test of `test`. */
function withTempPool<T>(test: Test<T>): Test<T> {
  test.before.each(() => {
    dir = mkdtempSync(join(tmpdir(), 'oci-userns-cli-alloc-'));
    writeFileSync(join(dir, 'subuid'), `containers:${2 * B}:${4 * B}\n`);
    writeFileSync(join(dir, 'subgid'), `containers:${2 * B}:${4 * B}\n`);
    config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ stateDir: join(dir, 'state'), logFile: join(dir, 'log'), pool: { subuidFile: join(dir, 'subuid'), subgidFile: join(dir, 'subgid') } }));
  });
  test.after.each(() => rmSync(dir, { recursive: true, force: true }));
  return test;
}

// Allocating scans the host's containers/storage roots.
const test = withTempPool(skippedUnless(suite('oci-userns alloc, release, ranges, gc'), 'cli-alloc unit (allocating)', storageSkipReason()));

test('alloc, ranges (table and JSON), release', async () => {
  const allocated = JSON.parse(await run('alloc', 'web1', '--json')) as RangeEntry;
  assert.is(allocated.source, 'cli');
  assert.match(await run('alloc', 'web1'), new RegExp(`^web1: uids 0:${allocated.uidMappings[0]!.hostID}:65536, gids 0:`));
  const table = await run('ranges');
  assert.match(table, /^ID {4}UIDS {2,}GIDS {2,}SINCE {2,}SOURCE\n/);
  assert.match(table, new RegExp(`\nweb1  ${allocated.uidMappings[0]!.hostID}-${allocated.uidMappings[0]!.hostID + B - 1}  `));
  const listed = JSON.parse(await run('ranges', '--json'));
  assert.equal(listed, [allocated]);
  assert.equal(Object.keys(listed[0]).sort(), ['gidMappings', 'id', 'since', 'source', 'uidMappings']);
  assert.match(await run('release', 'web1'), /^released web1: /);
  assert.is((await run('ranges')).trim(), 'no ranges registered');
  await fails(['release', 'web1'], /container web1 has no range in .*ranges.json; oci-userns ranges lists them/);
});

test('gc drops nothing that is still reserved; --repair rebuilds a corrupt registry', async () => {
  await run('alloc', 'kept');
  assert.is((await run('gc', '--runtime-root', join(dir, 'none'))).trim(), 'nothing to drop');
  writeFileSync(join(dir, 'state', 'ranges.json'), 'garbage');
  await fails(['ranges'], /registry .*ranges.json is corrupt: it is not JSON .*oci-userns gc --repair/);
  assert.match(await run('gc', '--repair', '--runtime-root', join(dir, 'none')), /moved the old registry to .*ranges.json.corrupt-.*; rebuilt .* with 0 running containers/);
  assert.equal(JSON.parse(await run('ranges', '--json')), []);
});

test.run();

const plain = withTempPool(suite('oci-userns alloc --size, ranges table'));
plain('--size: a number; the forms it refuses', async () => {
  assert.is(await requestedSize(undefined, undefined, B), undefined);
  assert.is(await requestedSize('70000', undefined, B), 70000);
  for (const [size, rootfsArg, pattern] of [
    ['auto', undefined, /--size auto needs --rootfs/],
    ['lots', undefined, /--size must be a number of ids or 'auto'/],
    ['5', dir, /not both/],
    ['auto', join(dir, 'missing'), /does not exist/],
  ] as const) {
    await rejects(requestedSize(size, rootfsArg, B), InputError, pattern);
  }
});

plain('the table lines up columns', () => {
  const e = (id: string, host: number): RangeEntry => ({ id, uidMappings: [{ containerID: 0, hostID: host, size: B }], gidMappings: [{ containerID: 0, hostID: host, size: B }], since: '2026-01-01T00:00:00.000Z', source: 'external' });
  assert.is(
    formatRangesTable([e('a', B), e('long-name', 10 * B)]),
    [
      'ID         UIDS           GIDS           SINCE                     SOURCE',
      'a          65536-131071   65536-131071   2026-01-01T00:00:00.000Z  external',
      'long-name  655360-720895  655360-720895  2026-01-01T00:00:00.000Z  external',
    ].join('\n'),
  );
});

plain.run();

// Sizing from a rootfs reads its owners, which only root can set.
const owners = withTempPool(skippedUnless(suite('oci-userns alloc --rootfs'), 'cli-alloc unit (--rootfs)', rootSkipReason()));

owners('--size auto from a rootfs; one not owned by 0:0 looks shifted already', async () => {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'home', 'user'), { recursive: true });
  writeFileSync(join(rootfs, 'home', 'user', 'file'), '');
  chownSync(join(rootfs, 'home', 'user', 'file'), 100000, 5);
  assert.is(await requestedSize('auto', rootfs, B), 2 * B);
  assert.is(await requestedSize(undefined, rootfs, B), 2 * B);
  const entry = JSON.parse(await run('alloc', 'big', '--rootfs', rootfs, '--json')) as RangeEntry;
  assert.is(entry.uidMappings[0]!.size, 2 * B);
  chownSync(rootfs, 2 * B, 2 * B);
  chmodSync(rootfs, 0o755);
  await rejects(requestedSize('auto', rootfs, B), InputError, /owned by 131072:131072, not 0:0, so it looks shifted already.*--size N/);
});

owners.run();
