import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HostError } from '../../lib/errors';
import { acquireLock, parseHolderName, withLock } from '../../lib/sys/lock';
import { memoryLogger } from '../../lib/log/logger';
import { processStart } from '../../lib/sys/process-identity';
import { rejects } from '../helpers/assert-error';

const test = suite('directory lock');
let dir = '';
let lock = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-lock-'));
  lock = join(dir, 'ranges.lock');
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

const bootId = () => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().replace(/-/g, '');

test('acquire, release, and nothing left behind', async () => {
  const held = await acquireLock({ path: lock });
  const [holder] = readdirSync(lock);
  assert.equal(parseHolderName(holder!)?.pid, process.pid);
  await held.release();
  assert.equal(readdirSync(dir), []);
});

test('excludes others in the same process too', async () => {
  const trace: string[] = [];
  const critical = (name: string) =>
    withLock({ path: lock }, async () => {
      trace.push(`${name} in`);
      await sleep(5);
      trace.push(`${name} out`);
    });
  await Promise.all(['a', 'b', 'c', 'd'].map(critical));
  for (let i = 0; i < trace.length; i += 2) assert.is(trace[i]!.split(' ')[0], trace[i + 1]!.split(' ')[0], trace.join(', '));
});

test('a live holder makes a waiter time out with its pid', async () => {
  const held = await acquireLock({ path: lock });
  try {
    await rejects(acquireLock({ path: lock, timeoutMs: 50 }), HostError, new RegExp(`timed out after 50 ms waiting for the lock ${lock}, held by process ${process.pid}`));
  } finally {
    await held.release();
  }
  // The waiter's staging directory is gone too.
  assert.equal(readdirSync(dir), []);
});

test('holders that are gone are broken: no such pid, another start time, another boot', async () => {
  const start = (await processStart(process.pid))!;
  for (const holder of [`4194305.1.${bootId()}.aa`, `${process.pid}.${start + 1}.${bootId()}.bb`, `${process.pid}.${start}.0123456789abcdef.cc`]) {
    mkdirSync(lock);
    writeFileSync(join(lock, holder), '');
    const logger = memoryLogger();
    const held = await acquireLock({ path: lock, timeoutMs: 1000, logger });
    assert.not.ok(existsSync(join(lock, holder)), holder);
    assert.match(logger.records[0]!.message, /broke the lock .* of process \d+, which is gone/);
    await held.release();
  }
});

test('an empty lock directory (holder killed while releasing) is taken over', async () => {
  mkdirSync(lock);
  const held = await acquireLock({ path: lock, timeoutMs: 1000 });
  assert.is(readdirSync(lock).length, 1);
  await held.release();
});

test('staging directories of dead processes are swept when a lock is broken', async () => {
  const dead = join(dir, `.ranges.lock.4194305.1.${bootId()}.dd`);
  mkdirSync(dead);
  mkdirSync(lock);
  writeFileSync(join(lock, `4194305.1.${bootId()}.ee`), '');
  await (await acquireLock({ path: lock })).release();
  assert.not.ok(existsSync(dead));
});

test('a file in place of the lock directory is a clear error', async () => {
  writeFileSync(lock, '');
  await rejects(acquireLock({ path: lock, timeoutMs: 100 }), Error, /is not a directory; remove it/);
  assert.equal(readdirSync(dir), ['ranges.lock']);
});

test.run();
