import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { suite, type Test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../hooks/run';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const spec = JSON.parse(readFileSync(join(fixtures, 'config-runc-spec-userns.json'), 'utf8'));

let dir = '';
let logFile = '';
let configFile = '';
/** A temp folder with a config, a log path and an empty bundle, for each test of `test`. */
function withHookDir<T>(test: Test<T>): Test<T> {
  test.before.each(() => {
    dir = mkdtempSync(join(tmpdir(), 'oci-userns-hook-'));
    logFile = join(dir, 'log', 'hook.log');
    configFile = join(dir, 'oci-userns.json');
    writeFileSync(configFile, JSON.stringify({ logFile, stateDir: join(dir, 'state'), limits: { stdinTimeoutMs: 300 } }));
    mkdirSync(join(dir, 'bundle', 'rootfs'), { recursive: true });
  });
  test.after.each(() => rmSync(dir, { recursive: true, force: true }));
  return test;
}

const test = withHookDir(suite('oci-userns hook: exit code, one stderr line, one log line'));

async function runHook(args: string[], stdin: string | undefined, env: NodeJS.ProcessEnv = {}) {
  const input = new PassThrough();
  if (stdin !== undefined) input.end(stdin);
  let stderr = '';
  const err = new Writable({
    write(chunk, _enc, done) {
      stderr += chunk.toString();
      done();
    },
  });
  const paths: string[] = [];
  const code = await main(args, { stdin: input, writeError: (line) => err.write(line), env: { OCI_USERNS_CONFIG: configFile, OCI_USERNS_LOG_FILE: logFile, ...env }, notePath: (path) => paths.push(path) });
  let log: Array<Record<string, unknown>> = [];
  try {
    log = readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  } catch {
    // no log written
  }
  return { code, stderr, log, paths };
}

const state = (over: Record<string, unknown> = {}) => JSON.stringify({ ociVersion: '1.0.2-dev', id: 'c1', status: 'creating', pid: process.pid, bundle: join(dir, 'bundle'), ...over });
const writeSpec = (value: unknown) => writeFileSync(join(dir, 'bundle', 'config.json'), JSON.stringify(value));

test('a container without a user namespace: exit 0, nothing to do, logged', async () => {
  writeSpec({ ...spec, linux: { ...spec.linux, namespaces: [{ type: 'pid' }, { type: 'mount' }] } });
  const { code, stderr, log, paths } = await runHook(['createRuntime'], state());
  assert.is(code, 0);
  assert.is(stderr, '');
  assert.equal(paths, ['hook createRuntime not-applicable'], 'the path the code cache is told');
  assert.is(log.length, 1);
  assert.is(log[0]!.outcome, 'not-applicable');
  assert.is(log[0]!.containerId, 'c1');
  assert.is(log[0]!.stage, 'createRuntime');
  assert.type(log[0]!.durationMs, 'number');
  assert.type(log[0]!.time, 'string');
});
test('malformed input: one stderr line "oci-userns: <stage>: <reason>", the same line in the log', async () => {
  writeSpec(spec);
  for (const [stdin, reason] of [
    ['', 'state on stdin is empty'],
    ['not json', 'state on stdin is not valid JSON'],
    [state({ id: undefined }), "missing required key 'id'"],
    [state({ bundle: join(dir, 'missing') }), 'does not exist'],
  ] as const) {
    rmSync(logFile, { force: true });
    const { code, stderr, log } = await runHook(['prestart'], stdin);
    assert.is(code, 2);
    assert.is(stderr.split('\n').length, 2, `one line: ${stderr}`);
    assert.ok(stderr.startsWith('oci-userns: prestart: ') && stderr.includes(reason), stderr);
    assert.is(log[0]!.message, stderr.trim());
    assert.is(log[0]!.outcome, 'error');
  }
});
test('stdin that never closes times out', async () => {
  writeSpec(spec);
  const input = new PassThrough();
  input.write('{');
  const { code, stderr } = await (async () => {
    let stderr = '';
    const err = new Writable({ write: (c, _e, d) => ((stderr += c.toString()), d()) });
    const code = await main(['createRuntime'], { stdin: input, writeError: (line) => err.write(line), env: { OCI_USERNS_CONFIG: configFile } });
    return { code, stderr };
  })();
  assert.is(code, 2);
  assert.match(stderr, 'did not end within 300 ms');
});
test('an invalid config file fails with exit 3 naming the key, logged to OCI_USERNS_LOG_FILE', async () => {
  writeSpec(spec);
  writeFileSync(configFile, JSON.stringify({ shift: { mod: 'auto' } }));
  const { code, stderr, log } = await runHook(['createRuntime'], state(), { OCI_USERNS_LOG_FILE: logFile });
  assert.is(code, 3);
  assert.match(stderr, /^oci-userns: createRuntime: config file .* unknown key 'shift.mod'\n$/);
  assert.is(log[0]!.message, stderr.trim());
});
test('an unknown stage or argument is a usage error', async () => {
  const bad = await runHook(['prestop'], state());
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /^oci-userns: prestop: unknown stage 'prestop'; usage: oci-userns hook/);
  const extra = await runHook(['poststop', '--force'], state());
  assert.is(extra.code, 2);
  assert.match(extra.stderr, "unexpected argument '--force'");
});
test('cgroup.strict refuses a systemd container whose spec rules out delegation, before changing anything', async () => {
  writeSpec({ ...spec, process: { ...spec.process, args: ['/sbin/init'] } });
  writeFileSync(configFile, JSON.stringify({ logFile, stateDir: join(dir, 'state'), cgroup: { strict: true } }));
  const owner = statSync(join(dir, 'bundle', 'rootfs')).uid;
  const { code, stderr } = await runHook(['createRuntime'], state());
  assert.is(code, 5);
  assert.match(stderr, /^oci-userns: createRuntime: cgroup not delegated: \/sys\/fs\/cgroup is mounted read-only; systemd cannot run without a delegated cgroup/);
  assert.is(statSync(join(dir, 'bundle', 'rootfs')).uid, owner, 'rootfs not shifted');
  assert.not.ok(existsSync(join(dir, 'state', 'ranges.json')), 'nothing registered');
});
test('a container process gone before its mappings are read is a host condition (exit 4), not bad input', async () => {
  // Joined by path without mappings in the spec: the hook reads them from /proc/PID.
  const { uidMappings: _u, gidMappings: _g, ...linux } = spec.linux;
  writeSpec({ ...spec, linux: { ...linux, namespaces: [{ type: 'user', path: '/proc/1/ns/user' }, { type: 'mount' }] } });
  const { code, stderr } = await runHook(['createRuntime'], state({ pid: 4194000 }));
  assert.is(code, 4, stderr);
  assert.match(stderr, /^oci-userns: createRuntime: container process 4194000 exited while the hook was setting it up .*; start the container again\n$/);
});
test('debug level records the full input', async () => {
  writeSpec(spec);
  const { code, log } = await runHook(['poststop'], state({ status: 'stopped', pid: undefined }), { OCI_USERNS_LOG_LEVEL: 'debug' });
  assert.is(code, 0);
  const received = log.find((l) => l.message === 'state received');
  assert.ok(received && String(received.state).includes('"status":"stopped"'));
  assert.ok(log.some((l) => l.message === 'config.json read' && (l.spec as { ociVersion: string }).ociVersion === spec.ociVersion));
});
test.run();

// Without strict, the hook goes on to shift the rootfs and delegate the
// cgroup, which chown to container root's ids: root only.
const full = withHookDir(skippedUnless(suite('oci-userns hook: the whole createRuntime'), 'hook-entry unit (shift and delegation)', rootSkipReason()));
full('without cgroup.strict, a systemd container whose spec rules out delegation is only warned about', async () => {
  writeSpec({ ...spec, process: { ...spec.process, args: ['/sbin/init'] } });
  const { code, log } = await runHook(['createRuntime'], state());
  assert.is(code, 0);
  assert.ok(log.some((l) => l.level === 'warn' && String(l.message).includes('systemd will fail to create its cgroups')));
  assert.equal(log.find((l) => l.outcome === 'done')!.cgroup, { skipped: ['/sys/fs/cgroup is mounted read-only'] });
});
full.run();
