import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS } from '../../lib/config/config';
import { loadConfig } from '../../lib/config/config-file';
import { ConfigError } from '../../lib/errors';
import { rejects } from '../helpers/assert-error';

const test = suite('loadConfig');
let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-config-'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

const write = (value: unknown) => {
  const path = join(dir, 'oci-userns.json');
  writeFileSync(path, typeof value === 'string' ? value : JSON.stringify(value));
  return path;
};
const failsWith = (path: string, pattern: RegExp, env: NodeJS.ProcessEnv = {}) => rejects(loadConfig({ path, env }), ConfigError, pattern);

test('a partial file is merged over the defaults, section by section', async () => {
  const config = await loadConfig({ path: write({ stateDir: '/srv/state', pool: { user: 'builder' } }), env: {} });
  assert.is(config.stateDir, '/srv/state');
  assert.is(config.pool.user, 'builder');
  assert.is(config.pool.blockSize, DEFAULTS.pool.blockSize);
  assert.equal(config.shift, DEFAULTS.shift);
});
test('an unknown key is an error naming the key', async () => {
  await failsWith(write({ pool: { usr: 'x' } }), /unknown key 'pool.usr'/);
  await failsWith(write({ logfile: '/x' }), /unknown key 'logfile'/);
});
test('a mistyped value is an error naming the key', async () => {
  await failsWith(write({ pool: { blockSize: '65536' } }), /'pool.blockSize' must be integer/);
  await failsWith(write({ shift: { mode: 'sometimes' } }), /'shift.mode' must be one of "auto", "never", "always-verify"/);
  await failsWith(write({ shift: { method: 'bind' } }), /'shift.method' must be one of "auto", "idmap", "chown"/);
  await failsWith(write({ stateDir: 'relative' }), /'stateDir' must match/);
  await failsWith(write('{"logLevel": '), /truncated JSON/);
});
test('the path: --config, then OCI_USERNS_CONFIG; an explicit missing file is an error', async () => {
  const path = write({ logLevel: 'debug' });
  assert.is((await loadConfig({ env: { OCI_USERNS_CONFIG: path } })).logLevel, 'debug');
  await failsWith(join(dir, 'absent.json'), /config file .*absent.json does not exist/);
});
test('environment overrides for the log', async () => {
  const config = await loadConfig({ path: write({}), env: { OCI_USERNS_LOG_LEVEL: 'warn', OCI_USERNS_LOG_FILE: '/tmp/x.log' } });
  assert.is(config.logLevel, 'warn');
  assert.is(config.logFile, '/tmp/x.log');
  await failsWith(write({}), /OCI_USERNS_LOG_LEVEL must be one of/, { OCI_USERNS_LOG_LEVEL: 'loud' });
});
test.run();
