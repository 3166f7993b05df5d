// lib/shim/hook-fifo.ts: the /bin/sh createRuntime hook and the shim's end
// of its two FIFOs, with real FIFOs and a real sh, no runtime.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fifoHook, openHookFifos, type HookFifos, type HookVerdict } from '../../lib/shim/hook-fifo';

const test = suite('hook-fifo: the createRuntime hook the shim serves');
let dir = '';
let fifos: HookFifos | undefined;
test.before.each(async () => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-hook-fifo-'));
  fifos = await openHookFifos(dir);
});
test.after.each(() => {
  fifos?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the hook as a runtime does: its args, its env, the state on stdin; resolves with its status and stderr. */
function runHook(state: string, shimPid = process.pid): Promise<{ code: number | null; stderr: string }> {
  const hook = fifoHook({ dir, shimPid, env: ['PATH=/usr/bin:/bin'], timeout: 5 });
  return new Promise((resolve) => {
    const child = spawn(hook.path, hook.args!.slice(1), { argv0: hook.args![0], env: { PATH: '/usr/bin:/bin' }, stdio: ['pipe', 'ignore', 'pipe'], timeout: hook.timeout! * 1000 });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stderr }));
    child.stdin.end(state);
  });
}

const STATE = { ociVersion: '1.0.2', id: 'c1', status: 'created', pid: 4242, bundle: '/b', annotations: { 'a b': 'x\\ny' } };

test('the state reaches the shim as one line, whitespace and all, and the hook exits 0 on its verdict', async () => {
  const got: string[] = [];
  const served = fifos!.serve(async (text) => {
    got.push(text);
    return { code: 0 };
  }, 1 << 20);
  const hook = await runHook(JSON.stringify(STATE, null, 2));
  assert.equal(hook, { code: 0, stderr: '' });
  assert.equal(JSON.parse(got[0]!), STATE);
  assert.is(await served, got[0]);
});
test('a failing verdict is the hook\'s exit code and stderr line', async () => {
  const verdict: HookVerdict = { code: 5, message: 'oci-userns: createRuntime: the rootfs /r is in use by container c0 with other ids' };
  void fifos!.serve(async () => verdict, 1 << 20);
  assert.equal(await runHook(JSON.stringify(STATE)), { code: 5, stderr: `${verdict.message}\n` });
});
test('a state over the limit is refused with exit 2', async () => {
  void fifos!.serve(async () => ({ code: 0 }), 16);
  const hook = await runHook(JSON.stringify(STATE));
  assert.is(hook.code, 2);
  assert.match(hook.stderr, /over 16 bytes/);
});
test('a shim that is gone: the hook says so at once (exit 4) and does not wait', async () => {
  const dead = spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim();
  const started = Date.now();
  const hook = await runHook(JSON.stringify(STATE), Number(dead));
  assert.is(hook.code, 4);
  assert.match(hook.stderr, new RegExp(`the shim \\(pid ${dead}\\) that prepared this container is gone`));
  assert.ok(Date.now() - started < 2000);
});
test('close before any hook ran: serve ends with nothing', async () => {
  const served = fifos!.serve(async () => ({ code: 0 }), 1 << 20);
  fifos!.close();
  assert.is(await served, undefined);
});
test('the FIFOs never reach a child of the shim (the runtime, and through it the container)', () => {
  const fds = spawnSync('ls', ['-l', '/proc/self/fd/'], { stdio: ['ignore', 'pipe', 'inherit'] }).stdout.toString();
  assert.not.match(fds, new RegExp(dir));
});
test.run();
