import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseRuntimeArgs } from '../../lib/shim/args';
import { killArgv, SYSTEMD_STOP_SIGNAL, termKill, withSystemdStopSignal } from '../../lib/shim/stop-signal';

const GLOBALS = ['--root', '/run/containerd/runc/k8s.io', '--log', '/run/containerd/b/log.json', '--log-format', 'json'];
const parse = (argv: string[]) => parseRuntimeArgs(argv, '/');

const pure = suite('termKill, withSystemdStopSignal');
pure("containerd's runc shim: kill ID 15 is SIGTERM to init; the 15 becomes 37", () => {
  const argv = [...GLOBALS, 'kill', 'c1', '15'];
  const kill = termKill(parse(argv), argv);
  assert.equal(kill, { id: 'c1', signalIndex: argv.length - 1 });
  assert.equal(withSystemdStopSignal(argv, kill!.signalIndex), [...GLOBALS, 'kill', 'c1', SYSTEMD_STOP_SIGNAL]);
});
pure('TERM, SIGTERM and no signal at all are SIGTERM too', () => {
  for (const signal of ['TERM', 'SIGTERM', 'sigterm']) assert.ok(termKill(parse(['kill', 'c1', signal]), ['kill', 'c1', signal]), signal);
  const bare = termKill(parse(['kill', 'c1']), ['kill', 'c1']);
  assert.equal(bare, { id: 'c1', signalIndex: -1 });
  assert.equal(withSystemdStopSignal(['kill', 'c1'], -1), ['kill', 'c1', SYSTEMD_STOP_SIGNAL]);
});
pure('other signals, --all (every process of the container) and other commands are left alone', () => {
  for (const argv of [['kill', 'c1', '9'], ['kill', 'c1', 'KILL'], ['kill', '--all', 'c1', '15'], ['kill', '-a', 'c1', '15'], ['delete', 'c1'], ['start', 'c1']]) {
    assert.is(termKill(parse(argv), argv), undefined, argv.join(' '));
  }
});
pure.run();

const withRuntime = suite('killArgv: asks the runtime whether the container is marked systemd');
let dir = '';
withRuntime.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-stop-signal-'));
});
withRuntime.after(() => rmSync(dir, { recursive: true, force: true }));

/** A fake runtime whose `state` prints these annotations, and records its argv. */
function fakeRuntime(annotations: Record<string, string> | 'fail'): string {
  const path = join(dir, `runtime-${Math.random().toString(36).slice(2)}`);
  const state = annotations === 'fail' ? 'echo "container does not exist" >&2; exit 1' : `echo '${JSON.stringify({ id: 'c1', status: 'running', annotations })}'`;
  writeFileSync(path, `#!/bin/sh\necho "$@" >> "${path}.argv"\n${state}\n`);
  chmodSync(path, 0o755);
  return path;
}

withRuntime('a container marked io.oci-userns.systemd=true gets 37; state runs with the same --root', async () => {
  const runtime = fakeRuntime({ 'io.oci-userns.systemd': 'true' });
  const argv = [...GLOBALS, 'kill', 'c1', '15'];
  assert.equal(await killArgv({ runtime, argv, args: parse(argv) }), [...GLOBALS, 'kill', 'c1', '37']);
  assert.is(readFileSync(`${runtime}.argv`, 'utf8').trim(), `${GLOBALS.join(' ')} state c1`);
});
withRuntime('an unmarked container, or one the runtime does not know, keeps SIGTERM', async () => {
  const argv = ['kill', 'c1', '15'];
  for (const runtime of [fakeRuntime({}), fakeRuntime({ 'io.oci-userns.systemd': 'false' }), fakeRuntime('fail')]) {
    assert.equal(await killArgv({ runtime, argv, args: parse(argv) }), argv);
  }
});
withRuntime('SIGKILL does not even ask the runtime', async () => {
  const runtime = fakeRuntime({ 'io.oci-userns.systemd': 'true' });
  const argv = ['kill', 'c1', '9'];
  assert.equal(await killArgv({ runtime, argv, args: parse(argv) }), argv);
  assert.not.ok(existsSync(`${runtime}.argv`));
});
withRuntime.run();
