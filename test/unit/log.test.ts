import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { openHookLogger } from '../../lib/log/hook-log';
import { openFileLogger } from '../../lib/log/cli-log';

const test = suite('the hook and CLI log writers write the same JSON lines');
let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-log-'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

const lines = (file: string) => readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
const withoutTime = ({ time, ...rest }: Record<string, unknown>) => {
  assert.ok(!Number.isNaN(Date.parse(String(time))), `time is an ISO date: ${time}`);
  return rest;
};

test('same fields, levels filtered alike, directory created', async () => {
  const written: Record<string, Record<string, unknown>[]> = {};
  for (const [name, open] of [['winston', openFileLogger], ['hook', openHookLogger]] as const) {
    const file = join(dir, name, 'sub', 'x.log');
    const logger = open({ file, level: 'info', fields: { stage: 'createRuntime' } });
    logger.info('createRuntime done', { containerId: 'c1', durationMs: 3.5, skipped: undefined });
    logger.debug('not written at info');
    logger.error('oci-userns: createRuntime: boom', { outcome: 'error' });
    await logger.close();
    written[name] = lines(file).map(withoutTime);
  }
  assert.equal(written.hook, written.winston);
  assert.equal(written.hook, [
    { stage: 'createRuntime', containerId: 'c1', durationMs: 3.5, level: 'info', message: 'createRuntime done' },
    { stage: 'createRuntime', outcome: 'error', level: 'error', message: 'oci-userns: createRuntime: boom' },
  ]);
});
test('an unwritable log does not throw', async () => {
  writeFileSync(join(dir, 'file'), '');
  const logger = openHookLogger({ file: join(dir, 'file', 'x.log'), level: 'info' });
  logger.info('lost');
  await logger.close();
});
test.run();
