import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runShim } from '../../cli/runtime';
import { DEFAULTS } from '../../lib/config/config';
import { runtimeLogLine, writeRuntimeLogError } from '../../lib/shim/runtime-log';

const test = suite("the shim's errors in the engine's --log (runc's JSON log format)");
let dir = '';
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-runtime-log-'));
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('one logrus JSON line: level error, msg, time to the second in UTC', () => {
  const line = runtimeLogLine('it failed', new Date('2026-11-29T23:37:40.974Z'));
  assert.is(line, '{"level":"error","msg":"it failed","time":"2026-11-29T23:37:40Z"}\n');
});
test('written only for --log-format json, appended after what is there', () => {
  const file = join(dir, 'log.json');
  assert.not.ok(writeRuntimeLogError({ global: { log: file } }, 'text format'));
  assert.not.ok(existsSync(file));
  assert.ok(writeRuntimeLogError({ global: { log: file, 'log-format': 'json' } }, 'first'));
  assert.ok(writeRuntimeLogError({ global: { log: file, 'log-format': 'json' } }, 'second'));
  assert.equal(readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l).msg), ['first', 'second']);
  assert.not.ok(writeRuntimeLogError({ global: { log: join(dir, 'missing', 'log.json'), 'log-format': 'json' } }, 'x'), 'an unwritable log is not an error');
});
test("containerd's create, failing in the shim before the runtime runs: the error reaches log.json", async () => {
  const file = join(dir, 'create-log.json');
  const config = { ...DEFAULTS, runtime: { ...DEFAULTS.runtime, path: join(dir, 'no-such-runc') } };
  const lines: string[] = [];
  const argv = ['--root', join(dir, 'root'), '--log', file, '--log-format', 'json', 'create', '--bundle', dir, '--pid-file', join(dir, 'init.pid'), 'c1'];
  const code = await runShim(argv, { config, hookPath: process.execPath, writeError: (line) => lines.push(line) });
  assert.is(code, 4);
  const logged = JSON.parse(readFileSync(file, 'utf8'));
  assert.is(logged.level, 'error');
  assert.match(logged.msg, /^oci-userns runtime: the real runtime .*no-such-runc is not an executable file/);
  assert.match(lines.join(''), /no-such-runc/);
});
test.run();
