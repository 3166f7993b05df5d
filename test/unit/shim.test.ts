// The runtime shim (lib/shim, cli/runtime) against a fake runtime first on
// PATH (test/helpers/fake-runtime.sh) that records its argv, the config.json
// it was handed and its descriptors 3-9. State, pool and bundles live in a
// temp dir. The cases that allocate also scan the host's containers/storage
// roots, and say SKIPPED where this user cannot read them.
import { chmodSync, chownSync, closeSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { pathHash } from '../../lib/sys/path-key';
import { main as runtimeMain } from '../../cli/runtime';
import { DEFAULTS, type Config } from '../../lib/config/config';
import { memoryLogger } from '../../lib/log/logger';
import { HostError, RefusedError } from '../../lib/errors';
import { readRegistry } from '../../lib/ranges/registry';
import { processStart } from '../../lib/sys/process-identity';
import { runShimCommand } from '../../lib/shim/shim';
import { rootSkipReason, skippedUnless, storageSkipReason } from '../helpers/skip';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const baseSpec = JSON.parse(readFileSync(join(fixtures, 'config-runc1.1.5-spec.json'), 'utf8'));
const B = 65536;

let dir = '';
let config: Config;
let env: NodeJS.ProcessEnv;
let hookPath = '';

function setup() {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-shim-'));
  // Container root must be able to search down to the bundles (lib/rootfs/access.ts).
  chmodSync(dir, 0o711);
  mkdirSync(join(dir, 'bin'));
  copyFileSync(join(import.meta.dirname, '..', 'helpers', 'fake-runtime.sh'), join(dir, 'bin', 'runc'));
  hookPath = join(dir, 'oci-userns');
  writeFileSync(hookPath, '');
  writeFileSync(join(dir, 'subuid'), `containers:${8 * B}:${4 * B}\n`);
  writeFileSync(join(dir, 'subgid'), `containers:${8 * B}:${4 * B}\n`);
  config = {
    ...DEFAULTS,
    logFile: join(dir, 'log'),
    stateDir: join(dir, 'state'),
    pool: { ...DEFAULTS.pool, subuidFile: join(dir, 'subuid'), subgidFile: join(dir, 'subgid') },
    shift: { ...DEFAULTS.shift, mode: 'never' },
    runtime: { path: 'runc', policy: 'systemd' },
  };
  env = { PATH: `${join(dir, 'bin')}:${process.env.PATH}`, FAKE_RUNTIME_RECORD: join(dir, 'record') };
}
const teardown = () => rmSync(dir, { recursive: true, force: true });

/** A bundle with a rootfs and this config.json; returns its path. */
function bundle(name: string, spec: unknown): string {
  const path = join(dir, name);
  mkdirSync(join(path, 'rootfs'), { recursive: true });
  writeFileSync(join(path, 'config.json'), JSON.stringify(spec, null, '\t'));
  return path;
}
const systemdSpec = { ...baseSpec, process: { ...baseSpec.process, args: ['/sbin/init'] } };

/** The paths the last shim call told the code cache. */
let noted: string[] = [];
const shim = (argv: string[], extraEnv: NodeJS.ProcessEnv = {}) => {
  noted = [];
  return runShimCommand({ argv, config, hookPath, env: { ...env, ...extraEnv }, cwd: dir, logger: memoryLogger(), notePath: (path) => noted.push(path) });
};

const recorded = {
  argv: () => readFileSync(join(dir, 'record.argv'), 'utf8').split('\0').slice(0, -1),
  config: () => JSON.parse(readFileSync(join(dir, 'record.config.json'), 'utf8')),
  configText: () => readFileSync(join(dir, 'record.config.json'), 'utf8'),
  /** Which of descriptors 3-9 the runtime had (dash keeps the script itself at 10). */
  fds: () => [...readFileSync(join(dir, 'record.fds'), 'utf8').matchAll(/ (\d+) -> /g)].map((m) => Number(m[1])).filter((fd) => fd >= 3 && fd <= 9),
};

/**
 * Runs with descriptors 3 and 4 open in this process (opening files until
 * they are), so that passing them is possible. Node's own descriptors there
 * come and go, so tests compare which numbers reached the runtime.
 */
function withFds3And4<T>(run: () => Promise<T>): Promise<T> {
  const opened: number[] = [];
  const isOpen = (fd: number) => existsSync(`/proc/self/fd/${fd}`);
  while (!isOpen(3) || !isOpen(4)) opened.push(openSync(join(dir, `fd-${opened.length}`), 'w'));
  return run().finally(() => opened.forEach((fd) => closeSync(fd)));
}

const pass = suite('shim with a fake runtime: what passes through untouched');
pass.before.each(setup);
pass.after.each(teardown);
pass('every other subcommand: the argv byte for byte, the runtime\'s exit status, no extra descriptors', async () => {
  for (const argv of [['state', 'c1'], ['--root', '/run/x', '--log-format=json', 'kill', 'c1', 'KILL'], ['--version'], ['list', '-q'], ['start', 'c1'], ['spec', '--rootless']]) {
    const result = await shim(argv, { FAKE_RUNTIME_EXIT: '3' });
    assert.equal(result, { exitCode: 3, warnings: [] }, argv.join(' '));
    assert.equal(noted, [['runtime', argv.find((a) => ['state', 'kill', 'list', 'start', 'spec'].includes(a))].filter(Boolean).join(' ')], argv.join(' '));
    assert.equal(recorded.argv(), argv);
    assert.equal(recorded.fds(), [], argv.join(' '));
  }
});
pass("delete --regex when the runtime's state root cannot be listed: the delete still runs, with the runtime's exit status", async () => {
  const root = join(dir, 'not-a-directory');
  writeFileSync(root, '');
  const argv = ['--root', root, 'delete', '--force', '--regex', 'oci-.*'];
  assert.equal(await shim(argv, { FAKE_RUNTIME_EXIT: '0' }), { exitCode: 0, warnings: [] });
  assert.equal(recorded.argv(), argv);
});
pass('create of a container the policy leaves alone: config.json and argv as they were, nothing registered', async () => {
  const b = bundle('plain', baseSpec);
  const before = readFileSync(join(b, 'config.json'), 'utf8');
  const argv = ['--root', '/run/runc', 'create', '--bundle', b, '--pid-file', join(dir, 'pid'), 'plain1'];
  assert.equal(await shim(argv), { exitCode: 0, warnings: [] });
  assert.equal(noted, ['runtime create']);
  assert.equal(recorded.argv(), argv);
  assert.is(recorded.configText(), before);
  assert.not.ok(existsSync(join(config.stateDir, 'ranges.json')));
});
pass('exec --preserve-fds=N: descriptors 3..3+N-1 reach the runtime, and no others', async () => {
  await withFds3And4(async () => {
    await shim(['exec', '--preserve-fds=2', 'c1', 'cat', '/proc/self/fd/3']);
    assert.equal(recorded.fds(), [3, 4]);
    await shim(['exec', '--preserve-fds', '1', 'c1', 'true']);
    assert.equal(recorded.fds(), [3]);
    await shim(['exec', 'c1', 'true', '--preserve-fds=2']);
    assert.equal(recorded.fds(), [], 'after the container id, --preserve-fds belongs to the command');
    await shim(['state', 'c1']);
    assert.equal(recorded.fds(), []);
  });
});
pass('cli/runtime main: the real runtime\'s exit status through the executable\'s entry', async () => {
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ logFile: config.logFile, stateDir: config.stateDir }));
  const code = await runtimeMain(['state', 'c9'], { env: { ...env, OCI_USERNS_CONFIG: join(dir, 'config.json'), FAKE_RUNTIME_EXIT: '7' }, programPath: hookPath });
  assert.is(code, 7);
  assert.equal(recorded.argv(), ['state', 'c9']);
});

const userns = skippedUnless(suite('shim with a fake runtime: the containers it gives a user namespace'), 'shim unit (allocating cases)', storageSkipReason());
userns.before.each(setup);
userns.after.each(teardown);
userns('create: the argv untouched, config.json given a user namespace from the pool, our hooks, a writable cgroup, one extra fd', async () => {
  const b = bundle('sd', systemdSpec);
  const argv = ['--root', '/run/runc', 'create', '-b', b, '--preserve-fds', '1', 'sd1'];
  await withFds3And4(async () => {
    assert.equal(await shim(argv), { exitCode: 0, warnings: [] });
    assert.equal(recorded.fds(), [3]);
  });
  assert.equal(recorded.argv(), argv);
  const spec = recorded.config();
  const map = [{ containerID: 0, hostID: spec.linux.uidMappings[0].hostID, size: B }];
  assert.ok(map[0]!.hostID >= 8 * B && map[0]!.hostID < 12 * B, 'from the pool');
  assert.equal(spec.linux.uidMappings, map);
  assert.equal(spec.linux.gidMappings, map);
  const types = spec.linux.namespaces.map((n: { type: string }) => n.type);
  assert.ok(types.includes('user') && types.includes('cgroup'), types.join(','));
  const cgroup = spec.mounts.find((m: { destination: string }) => m.destination === '/sys/fs/cgroup');
  assert.ok(cgroup.options.includes('rw') && !cgroup.options.includes('ro'));
  const served = spec.hooks.createRuntime.at(-1);
  assert.equal([served.path, served.args.slice(3), served.timeout], ['/bin/sh', ['oci-userns-hook', join(config.stateDir, 'shim', 'sd1'), String(process.pid)], 120], 'the createRuntime hook is the one the shim serves');
  assert.is(spec.hooks.poststop, undefined, 'no poststop hook: the shim releases at delete');
  assert.ok(existsSync(join(config.stateDir, 'shim', 'sd1', 'prepared.json')), 'the shim keeps a record of the container it prepared');
  assert.is(readFileSync(join(b, 'config.json'), 'utf8'), JSON.stringify(systemdSpec, null, '\t'), "the caller's config.json is back");
  assert.is(spec.annotations['io.oci-userns.source'], 'shim');
  const entries = await readRegistry(config.stateDir);
  assert.equal(entries.map((e) => [e.id, e.source, e.uidMappings]), [['sd1', 'shim', map]]);
  assert.equal(noted, ['runtime create prepared']);
  assert.equal(await shim(['delete', 'sd1']), { exitCode: 0, warnings: [] });
  assert.equal(recorded.argv(), ['delete', 'sd1']);
  assert.equal(await readRegistry(config.stateDir), [], 'delete released the range');
  assert.not.ok(existsSync(join(config.stateDir, 'shim', 'sd1')), 'delete dropped the record');
});
userns('a create the runtime fails, and a run that ends, give the range back', async () => {
  const b = bundle('sd', systemdSpec);
  assert.equal(await shim(['create', '--bundle', b, 'sd2'], { FAKE_RUNTIME_EXIT: '1' }), { exitCode: 1, warnings: [] });
  assert.is(recorded.config().linux.uidMappings.length, 1, 'the runtime was handed the modified spec');
  assert.equal(await readRegistry(config.stateDir), []);
  writeFileSync(join(b, 'config.json'), JSON.stringify(systemdSpec));
  assert.equal(await shim(['run', `--bundle=${b}`, 'sd3']), { exitCode: 0, warnings: [] });
  assert.equal(await readRegistry(config.stateDir), []);
  assert.equal(readdirSync(join(config.stateDir, 'shim')), [], 'no record of either is left');
});
userns('what a shim killed during a create left (the container\'s directory, its hook FIFOs) does not block the next create of that id', async () => {
  const b = bundle('sd', systemdSpec);
  const left = join(config.stateDir, 'shim', 'sd4');
  mkdirSync(left, { recursive: true, mode: 0o700 });
  execFileSync('mkfifo', [join(left, 'request'), join(left, 'verdict')]);
  writeFileSync(join(left, 'prepared.json'), '{}');
  assert.equal(await shim(['create', '--bundle', b, 'sd4']), { exitCode: 0, warnings: [] });
  assert.is(recorded.config().linux.uidMappings.length, 1);
  assert.equal(await shim(['delete', 'sd4']), { exitCode: 0, warnings: [] });
  assert.not.ok(existsSync(left));
});
userns('a shim killed while it lent config.json: the next create from the bundle puts the caller\'s back and starts from it', async () => {
  const b = bundle('sd', systemdSpec);
  const caller = readFileSync(join(b, 'config.json'));
  await shim(['create', '--bundle', b, 'first']);
  const firstSpec = recorded.configText();
  // What a shim killed between lending and giving back leaves: the first container's spec in the bundle, the caller's bytes kept aside.
  mkdirSync(join(config.stateDir, 'lent'), { recursive: true });
  writeFileSync(join(config.stateDir, 'lent', `${pathHash(join(b, 'config.json'))}.json`), caller);
  writeFileSync(join(b, 'config.json'), firstSpec);
  await shim(['delete', 'first']);
  assert.equal(await shim(['create', '--bundle', b, 'second']), { exitCode: 0, warnings: [] });
  const second = recorded.config();
  assert.equal(second.hooks.createRuntime.length, 1, "the first container's hooks are not in the second's spec");
  assert.equal(second.annotations, { ...systemdSpec.annotations, ...{ 'io.oci-userns.systemd': 'true', 'io.oci-userns.source': 'shim' } });
  assert.equal(readFileSync(join(b, 'config.json')), caller, "the caller's config.json is back");
  assert.equal(readdirSync(join(config.stateDir, 'lent')).filter((f) => f.endsWith('.json')), [], 'nothing left aside');
});
userns('hooks.d hooks naming the program through a symlink are not added a second time', async () => {
  const installed = join(dir, 'bin-oci-userns');
  symlinkSync(hookPath, installed);
  const hooksD = (stage: string) => [{ path: installed, args: ['oci-userns', 'hook', stage] }];
  const b = bundle('sd', { ...systemdSpec, hooks: { createRuntime: hooksD('createRuntime'), poststop: hooksD('poststop') } });
  assert.equal(await shim(['create', '--bundle', b, 'sd5']), { exitCode: 0, warnings: [] });
  const { hooks } = recorded.config();
  assert.equal([hooks.createRuntime.map((h: { path: string }) => h.path), hooks.poststop.map((h: { path: string }) => h.path)], [[installed], [installed]]);
});
userns('shift.method idmap and a rootfs every host user can reach (the safety rule): create refused with one line, nothing chowned, the range given back', async () => {
  config = { ...config, shift: { ...config.shift, mode: 'auto', method: 'idmap' } };
  const b = bundle('sd', systemdSpec);
  const error = await shim(['create', '--bundle', b, 'sd6']).then(
    () => undefined,
    (e: Error) => e,
  );
  assert.instance(error, HostError);
  assert.match(error!.message, /^the rootfs .*\/sd\/rootfs cannot be idmapped here \(every host user can reach the raw rootfs/);
  assert.is(lstatSync(join(b, 'rootfs')).uid, 0, 'not chowned');
  assert.equal(await readRegistry(config.stateDir), []);
});
userns('a failed delete keeps the range', async () => {
  const b = bundle('sd', systemdSpec);
  await shim(['create', '--bundle', b, 'sd4']);
  await shim(['delete', 'sd4'], { FAKE_RUNTIME_EXIT: '1' });
  assert.equal((await readRegistry(config.stateDir)).map((e) => e.id), ['sd4']);
});

const sized = skippedUnless(suite('shim with a fake runtime: a range sized from the rootfs'), 'shim unit (sizing from the rootfs)', rootSkipReason(['getfattr', 'setfattr']) ?? storageSkipReason());
sized.before.each(setup);
sized.after.each(teardown);
sized('a rootfs with an owner past 65535 gets a range that maps it, and is shifted into it', async () => {
  const b = bundle('big', systemdSpec);
  writeFileSync(join(b, 'rootfs', 'helm'), '');
  chownSync(join(b, 'rootfs', 'helm'), 99999, 99999);
  config = { ...config, shift: { ...config.shift, mode: 'auto', method: 'chown' } };
  assert.equal(await shim(['create', '--bundle', b, 'big1']), { exitCode: 0, warnings: [] });
  const [map] = recorded.config().linux.uidMappings;
  assert.equal([map.containerID, map.size], [0, 2 * B], 'two blocks: 100000 ids rounded up to whole blocks');
  assert.is(lstatSync(join(b, 'rootfs', 'helm')).uid, map.hostID + 99999);
});

const podSandbox = JSON.parse(readFileSync(join(fixtures, 'config-containerd1.7.24-pod-sandbox.json'), 'utf8'));
const podContainer = JSON.parse(readFileSync(join(fixtures, 'config-containerd1.7.24-pod-container.json'), 'utf8'));
const SANDBOX_ID = podSandbox.annotations['io.kubernetes.cri.sandbox-id'];

/** The runtime's state of the sandbox under `root`, naming this test process as its init (alive, with its start time). */
function sandboxState(root: string): void {
  mkdirSync(join(root, SANDBOX_ID), { recursive: true });
  writeFileSync(join(root, SANDBOX_ID, 'state.json'), JSON.stringify({ init_process_pid: process.pid, init_process_start: processStart(process.pid) }));
}

const pods = skippedUnless(suite('shim with a fake runtime: a CRI pod the shim gives a user namespace (containerd 1.7 specs)'), 'shim unit (pods)', storageSkipReason());
pods.before.each(setup);
pods.after.each(teardown);
pods('the sandbox gets the range; the app container joins its user namespace by path with its mappings and gets no range of its own; deleting the sandbox frees it', async () => {
  const root = join(dir, 'runc-root');
  const runc = { FAKE_RUNTIME_VERSION: 'runc version 1.1.5+ds1' };
  const sandboxRun = await shim(['--root', root, 'create', '--bundle', bundle('sandbox', podSandbox), SANDBOX_ID], runc);
  assert.is(sandboxRun.exitCode, 0);
  assert.is(sandboxRun.warnings.length, 1, 'runc 1.1.5 cannot exec into it: said at create');
  assert.match(sandboxRun.warnings[0]!, /runc 1\.1\.5 joins a user namespace before the network namespace/);
  const sandboxSpec = recorded.config();
  assert.equal(sandboxSpec.linux.namespaces.find((n: { type: string }) => n.type === 'user'), { type: 'user' });
  const [entry] = await readRegistry(config.stateDir);
  assert.equal([entry!.id, entry!.source], [SANDBOX_ID, 'shim']);

  sandboxState(root);
  copyFileSync(join(dir, 'bin', 'runc'), join(dir, 'bin', 'crun'));
  config = { ...config, runtime: { ...config.runtime, path: 'crun' } };
  const app = await shim(['--root', root, 'create', '--bundle', bundle('app', podContainer), 'app1'], { FAKE_RUNTIME_VERSION: 'crun version 1.8.1' });
  assert.equal(app, { exitCode: 0, warnings: [] }, 'crun joins the network namespace after the user namespace');
  const spec = recorded.config();
  assert.equal(spec.linux.namespaces[0], { type: 'user', path: `/proc/${process.pid}/ns/user` });
  assert.equal(spec.linux.uidMappings, entry!.uidMappings);
  assert.equal(spec.linux.gidMappings, entry!.gidMappings);
  assert.equal(
    spec.linux.namespaces.filter((n: { type: string }) => ['ipc', 'uts', 'network'].includes(n.type)),
    podContainer.linux.namespaces.filter((n: { type: string }) => ['ipc', 'uts', 'network'].includes(n.type)),
    "the sandbox's ipc, uts and network namespaces stay joined",
  );
  assert.is(spec.annotations['io.oci-userns.systemd'], 'true');
  assert.equal((await readRegistry(config.stateDir)).map((e) => e.id), [SANDBOX_ID], 'one range for the pod');

  await shim(['--root', root, 'delete', 'app1']);
  await shim(['--root', root, 'delete', SANDBOX_ID]);
  assert.equal(await readRegistry(config.stateDir), []);
});
pods('under runc before 1.3 an app container is refused at create, before the runtime runs, with what to do; the runtime version is asked once', async () => {
  const root = join(dir, 'runc-root');
  const runc = { FAKE_RUNTIME_VERSION: 'runc version 1.1.5+ds1' };
  await shim(['--root', root, 'create', '--bundle', bundle('sandbox', podSandbox), SANDBOX_ID], runc);
  sandboxState(root);
  rmSync(join(dir, 'record.argv'));
  const b = bundle('app', podContainer);
  const error = await shim(['--root', root, 'create', '--bundle', b, 'app2'], runc).then(() => undefined, (e: Error) => e);
  assert.instance(error, RefusedError);
  assert.match(error!.message, /container app2 cannot start in the user namespace of its pod: runc 1\.1\.5 joins a user namespace before/);
  assert.match((error as RefusedError).hint ?? '', /crun/);
  assert.not.ok(existsSync(join(dir, 'record.argv')), 'the runtime was not run');
  assert.equal(JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')), podContainer, 'config.json unchanged');
  assert.not.ok(existsSync(join(config.stateDir, 'shim', 'app2')), 'no record (nor hook FIFOs) of a container refused');
  assert.is(readFileSync(join(dir, 'record.versions'), 'utf8'), 'x\n', 'runc --version ran once for two creates');
});
pods("an app container of a pod without the shim's user namespace is refused its own range (it would not own the pod's IPC namespace)", async () => {
  const { 'io.oci-userns.userns': _auto, ...annotations } = podContainer.annotations;
  const b = bundle('app', { ...podContainer, annotations });
  const error = await shim(['create', '--bundle', b, 'app3']).then(() => undefined, (e: Error) => e);
  assert.instance(error, RefusedError);
  assert.match(error!.message, /of pod sandbox \w+ would get a user namespace of its own/);
  assert.equal(await readRegistry(config.stateDir), []);
});

pass.run();
userns.run();
sized.run();
pods.run();
