import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS } from '../../lib/config/config';
import { HostError, InputError } from '../../lib/errors';
import { memoryLogger } from '../../lib/log/logger';
import { mergeRanges, ownerAliases, parseSubid, poolRanges, readPool, subtractRanges } from '../../lib/ranges/subid';
import { rejects } from '../helpers/assert-error';

const throwsInput = (fn: () => unknown, pattern: RegExp) => rejects(fn, InputError, pattern);

const parse = suite('parseSubid');
parse('skips comments and blank lines, keeps line numbers', () => {
  const text = '# podman\n\ncontainers:2147483647:2147483648\n   \n  # indented comment\nalice:100000:65536\n';
  assert.equal(parseSubid(text, '/etc/subuid'), [
    { owner: 'containers', start: 2147483647, count: 2147483648, line: 3 },
    { owner: 'alice', start: 100000, count: 65536, line: 6 },
  ]);
});
parse('numeric owners and several entries per owner', () => {
  assert.equal(
    parseSubid('1000:100000:65536\n1000:300000:65536\n', 'f').map((e) => [e.owner, e.start]),
    [
      ['1000', 100000],
      ['1000', 300000],
    ],
  );
});
parse('tolerates CRLF line ends and surrounding spaces', () => {
  assert.equal(parseSubid(' a:1:2 \r\n', 'f'), [{ owner: 'a', start: 1, count: 2, line: 1 }]);
});
parse('a malformed line names the file and the line', async () => {
  await throwsInput(() => parseSubid('ok:1:2\nbroken:1\n', '/etc/subuid'), /^\/etc\/subuid line 2: expected 3 fields, found 2: 'broken:1'/);
  await throwsInput(() => parseSubid('a:1:2:3', 'f'), /line 1: expected 3 fields, found 4/);
  await throwsInput(() => parseSubid('a:-1:2', 'f'), /line 1: start and count must be decimal/);
  await throwsInput(() => parseSubid('a:0x10:2', 'f'), /decimal/);
  await throwsInput(() => parseSubid('a:1: 2', 'f'), /decimal/);
  await throwsInput(() => parseSubid(':1:2', 'f'), /owner/);
  await throwsInput(() => parseSubid('a b:1:2', 'f'), /owner/);
  await throwsInput(() => parseSubid('a:1:0', 'f'), /count is 0/);
  await throwsInput(() => parseSubid('a:4294967295:1', 'f'), /past the largest id 4294967294/);
});
parse('the largest range podman suggests is accepted', () => {
  assert.equal(parseSubid('containers:2147483647:2147483648', 'f')[0]!.count, 2147483648);
});
parse.run();

const ranges = suite('pool ranges');
ranges('merge joins overlapping and touching ranges', () => {
  assert.equal(
    mergeRanges([
      { start: 300, count: 10 },
      { start: 100, count: 100 },
      { start: 150, count: 100 },
      { start: 250, count: 5 },
    ]),
    [
      { start: 100, count: 155 },
      { start: 300, count: 10 },
    ],
  );
});
ranges('subtract cuts holes', () => {
  assert.equal(subtractRanges([{ start: 0, count: 100 }], [{ start: 10, count: 10 }, { start: 90, count: 20 }]), [
    { start: 0, count: 10 },
    { start: 20, count: 70 },
  ]);
});
ranges('the pool user matches by name or uid; ids other owners hold are left out', () => {
  const entries = parseSubid('containers:100000:200000\n1001:400000:65536\nbob:150000:10000\nbob:900000:10\n', 'f');
  const { ranges: r, shared } = poolRanges(entries, new Set(['containers', '1001']));
  assert.equal(r, [
    { start: 100000, count: 50000 },
    { start: 160000, count: 140000 },
    { start: 400000, count: 65536 },
  ]);
  assert.equal(shared.map((s) => s.line), [3]);
});
ranges('aliases come from passwd both ways', () => {
  const passwd = 'root:x:0:0::/root:/bin/sh\ncontainers:x:999:999::/:/usr/sbin/nologin\n';
  assert.equal([...ownerAliases('containers', passwd)].sort(), ['999', 'containers']);
  assert.equal([...ownerAliases('999', passwd)].sort(), ['999', 'containers']);
  assert.equal([...ownerAliases('nobody-here', passwd)], ['nobody-here']);
  assert.equal([...ownerAliases('containers', undefined)], ['containers']);
});
ranges.run();

const read = suite('readPool');
let dir = '';
read.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-subid-'));
});
read.after(() => rmSync(dir, { recursive: true, force: true }));
const poolIn = (uid: string, gid: string | undefined) => {
  writeFileSync(join(dir, 'subuid'), uid);
  if (gid === undefined) rmSync(join(dir, 'subgid'), { force: true });
  else writeFileSync(join(dir, 'subgid'), gid);
  writeFileSync(join(dir, 'passwd'), 'containers:x:999:999::/:/bin/false\n');
  return { pool: { ...DEFAULTS.pool, subuidFile: join(dir, 'subuid'), subgidFile: join(dir, 'subgid') }, passwdFile: join(dir, 'passwd') };
};
read('reads both files for the pool user', async () => {
  const pool = await readPool(poolIn('containers:131072:131072\n', '999:196608:65536\n'));
  assert.equal(pool.uids, [{ start: 131072, count: 131072 }]);
  assert.equal(pool.gids, [{ start: 196608, count: 65536 }]);
});
read('warns about ids shared with another owner', async () => {
  const logger = memoryLogger();
  await readPool({ ...poolIn('containers:0:200000\nalice:100000:65536\n', 'containers:0:200000\n'), logger });
  assert.match(logger.records[0]!.message, /line 2: alice also holds uids 100000-165535 of pool 'containers'/);
});
read('no entries, or no file: HostError with the line to add', async () => {
  for (const [uid, gid, pattern] of [
    ['alice:1:2\n', 'containers:0:65536\n', /subuid has no uids for pool user 'containers'.*echo 'containers:2147483647:2147483648'/],
    ['containers:0:65536\n', undefined, /subgid does not exist/],
  ] as const) {
    await rejects(readPool(poolIn(uid, gid)), HostError, pattern);
  }
});
read('a malformed line is an InputError', async () => {
  await rejects(readPool(poolIn('containers:0:65536\ncontainers:x:1\n', 'containers:0:65536\n')), InputError, /subuid line 2/);
});
read.run();
