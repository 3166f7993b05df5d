// End to end: the runtime shim driven the way engines drive a runtime.
// A busybox bundle through create/start/state/kill/delete with runc and
// with crun; pass-through and the shim's own errors; signals and exit
// status; podman --runtime <the shim> booting the Debian systemd image.
// Runs the built program (dist/oci-userns.cjs, or $OCI_USERNS_PROGRAM)
// through its alias oci-userns-runtime, as install.sh lays it out. Needs
// root, runc, crun, busybox-static and cgroup2 (on a hybrid host each
// engine session runs in a private mount namespace whose /sys/fs/cgroup
// is the cgroup2 hierarchy).
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { skippedUnless } from '../helpers/skip';
import { cgroup2MountPoint } from '../../lib/doctor/doctor';
import { parseProcIdMap, type IdMapping } from '../../lib/oci/idmap';
import { cgroup2ShellArgv, commandExists } from './harness';

const root = join(import.meta.dirname, '..', '..');
const PROGRAM = process.env.OCI_USERNS_PROGRAM ?? join(root, 'dist', 'oci-userns.cjs');
const FRONT = join(root, 'bin', 'oci-userns-runtime');
const BUSYBOX = '/bin/busybox';
const IMAGE = 'localhost/oci-userns-debian-systemd';
// Far from the ranges other suites and podman --userns=auto use.
const POOL_START = 1879048192;
const PODMAN_RUN = ['--pids-limit', '-1', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];


/** Runs a script where runtimes see cgroup2 at /sys/fs/cgroup (see test/e2e/podman.test.ts). */
function engineShell(script: string, env: Record<string, string> = {}) {
  const [command, ...args] = cgroup2ShellArgv(script);
  return execa(command!, args, { env: { ...process.env, ...env }, reject: false, all: true, timeout: 240_000 });
}

let dir = '';
/** The shim as engines call it: the alias, a symlink to the program. */
let shim = '';

async function whyNot(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root';
  for (const tool of ['runc', 'crun', 'unshare']) if (!(await commandExists(tool))) return `${tool} is not installed`;
  if (!existsSync(BUSYBOX)) return `${BUSYBOX} is missing (apt-get install busybox-static)`;
  if (cgroup2MountPoint(readFileSync('/proc/self/mountinfo', 'utf8')) === undefined) return 'no cgroup2 hierarchy is mounted';
  if (!existsSync(PROGRAM)) return `${PROGRAM} is not built (npm run build)`;
  // Answered by runc, or by the shim itself (a config problem): either way the shim ran.
  const probe = await execa(PROGRAM, ['runtime', '--version'], { reject: false, all: true, env: { PATH: process.env.PATH } });
  if (!/runc version|^oci-userns runtime: /m.test(probe.all)) return `${PROGRAM} does not dispatch 'runtime' to the shim yet (bin/oci-userns.ts): ${probe.all.split('\n')[0]}`;
  return undefined;
}

interface ConfigOptions {
  name: string;
  runtime?: string;
  policy?: 'systemd' | 'always' | 'annotation';
  blocks?: number;
}

/** A config of its own per case: state dir, log and a pool of `blocks` blocks in temp files. */
function writeConfig(opts: ConfigOptions): { path: string; stateDir: string; logFile: string } {
  const base = join(dir, opts.name);
  mkdirSync(base, { recursive: true });
  const line = `0:${POOL_START}:${(opts.blocks ?? 4) * 65536}\n`;
  writeFileSync(join(base, 'subuid'), line);
  writeFileSync(join(base, 'subgid'), line);
  const stateDir = join(base, 'state');
  const logFile = join(base, 'log', 'oci-userns.log');
  const config = {
    stateDir,
    logFile,
    pool: { user: '0', subuidFile: join(base, 'subuid'), subgidFile: join(base, 'subgid') },
    runtime: { path: opts.runtime ?? 'runc', policy: opts.policy ?? 'always' },
  };
  writeFileSync(join(base, 'config.json'), JSON.stringify(config));
  return { path: join(base, 'config.json'), stateDir, logFile };
}

function registry(stateDir: string): Array<{ id: string; source: string; uidMappings: IdMapping[]; gidMappings: IdMapping[] }> {
  const file = join(stateDir, 'ranges.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).entries : [];
}

/** A busybox bundle from `<runtime> spec`, made to run without a terminal, rlimits or device cgroup (this machine's limits). */
async function busyboxBundle(name: string, runtime: string, args: string[]): Promise<string> {
  const bundle = join(dir, name);
  mkdirSync(join(bundle, 'rootfs', 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'tmp']) mkdirSync(join(bundle, 'rootfs', d), { recursive: true });
  copyFileSync(BUSYBOX, join(bundle, 'rootfs', 'bin', 'busybox'));
  chmodSync(join(bundle, 'rootfs', 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'sleep', 'cat', 'true', 'ls']) symlinkSync('busybox', join(bundle, 'rootfs', 'bin', applet));
  await execa(runtime, ['spec'], { cwd: bundle });
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = args;
  delete spec.process.rlimits;
  delete spec.linux.resources;
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec, null, 2));
  return bundle;
}

const skip = await whyNot();

const lifecycle = skippedUnless(suite('shim: create/start/state/kill/delete of a busybox bundle, as engines drive a runtime'), 'shim e2e', skip);
lifecycle.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-shim-'));
  // Container root maps to an unprivileged host uid that must reach the bundle.
  chmodSync(dir, 0o755);
  // As install.sh lays it out: the front, and the program beside it.
  shim = join(dir, 'oci-userns-runtime');
  symlinkSync(FRONT, shim);
  symlinkSync(PROGRAM, join(dir, 'oci-userns'));
});

for (const runtime of ['runc', 'crun']) {
  lifecycle(`${runtime}: the container runs in a user namespace with a registered range, released on delete`, async () => {
    const config = writeConfig({ name: `life-${runtime}`, runtime });
    const bundle = await busyboxBundle(`bundle-${runtime}`, runtime, ['sleep', '300']);
    const original = readFileSync(join(bundle, 'config.json'), 'utf8');
    const stateRoot = join(dir, `${runtime}-root`);
    const id = `oci-userns-shim-${runtime}-${process.pid}`;
    const out = join(dir, `out-${runtime}`);
    mkdirSync(out);
    const S = `${shim} --root ${stateRoot}`;
    const result = await engineShell(
      [
        `${S} create --bundle ${bundle} --pid-file ${out}/pid ${id}; echo create=$?`,
        `${S} start ${id}; echo start=$?`,
        `${S} state ${id} > ${out}/state.json; echo state=$?`,
        `cat /proc/$(cat ${out}/pid)/uid_map > ${out}/uid_map`,
        `cp ${config.stateDir}/ranges.json ${out}/ranges.json`,
        `ls -l /proc/$(cat ${out}/pid)/fd/ > ${out}/fds 2>&1`,
        `${S} kill ${id} KILL; echo kill=$?`,
        `for i in $(seq 50); do ${S} state ${id} | grep -q '"status": "stopped"' && break; sleep 0.1; done`,
        `${S} delete ${id}; echo delete=$?`,
        // Cleanup when a step above failed: the real runtime, not the shim.
        `${runtime} --root ${stateRoot} delete -f ${id} >/dev/null 2>&1; true`,
      ].join('\n'),
      { OCI_USERNS_CONFIG: config.path },
    );
    for (const step of ['create', 'start', 'state', 'kill', 'delete']) assert.match(result.stdout, new RegExp(`^${step}=0$`, 'm'), `${step} failed:\n${result.all}`);
    assert.is(JSON.parse(readFileSync(join(out, 'state.json'), 'utf8')).status, 'running');
    const uidMap = parseProcIdMap(readFileSync(join(out, 'uid_map'), 'utf8'), 'uid_map');
    assert.is(uidMap.length, 1);
    assert.is(uidMap[0]!.containerID, 0);
    assert.ok(uidMap[0]!.hostID >= POOL_START && uidMap[0]!.hostID < POOL_START + 4 * 65536, `host id ${uidMap[0]!.hostID} is outside the pool`);
    const entry = JSON.parse(readFileSync(join(out, 'ranges.json'), 'utf8')).entries.find((e: { id: string }) => e.id === id);
    assert.ok(entry, `no registry entry for ${id} while it ran`);
    assert.is(entry.source, 'shim');
    assert.equal(entry.uidMappings, uidMap);
    assert.ok(entry.pid > 0, 'the served createRuntime hook recorded the pid');
    const served = readFileSync(config.logFile, 'utf8').split('\n').filter((l) => l.includes('"servedBy":"shim"') && l.includes(id));
    assert.is(served.length, 1, `the shim served the createRuntime hook once: ${served.join('\n')}`);
    // A plain busybox spec mounts /sys/fs/cgroup read-only: the plan skips delegation, as the Node hook's would.
    assert.ok(served[0]!.includes('"message":"createRuntime done"') && served[0]!.includes('"cgroup":{"skipped"'), served[0]);
    const fds = readFileSync(join(out, 'fds'), 'utf8');
    assert.not.match(fds, /request|verdict|\/shim\//, `the hook's FIFOs reached the container: ${fds}`);
    assert.is(readFileSync(join(bundle, 'config.json'), 'utf8'), original, "the caller's config.json changed");
    assert.not.ok(existsSync(join(config.stateDir, 'shim', id)), "the shim's record is left after delete");
    assert.equal(registry(config.stateDir).filter((e) => e.id === id), [], 'the range is still registered after delete');
  });
}


for (const runtime of ['runc', 'crun']) {
  lifecycle(`${runtime}: a second create of a running container's id is the runtime's to refuse, in its words; the running container keeps its range, record and rootfs`, async () => {
    const config = writeConfig({ name: `dup-${runtime}`, runtime });
    const bundle = await busyboxBundle(`bundle-dup-${runtime}`, runtime, ['sleep', '300']);
    const stateRoot = join(dir, `dup-${runtime}-root`);
    const id = `oci-userns-dup-${runtime}-${process.pid}`;
    const out = join(dir, `out-dup-${runtime}`);
    mkdirSync(out);
    const S = `${shim} --root ${stateRoot}`;
    const result = await engineShell(
      [
        `${S} run -d --bundle ${bundle} ${id} </dev/null >/dev/null 2>&1; echo first=$?`,
        `cp ${config.stateDir}/ranges.json ${out}/before.json`,
        `${S} create --bundle ${bundle} ${id} </dev/null >/dev/null 2>${out}/again.err; echo again=$?`,
        `${runtime} --root ${stateRoot} create --bundle ${bundle} ${id} </dev/null >/dev/null 2>${out}/plain.err; echo plain=$?`,
        `cp ${config.stateDir}/ranges.json ${out}/after.json`,
        `ls ${config.stateDir}/shim > ${out}/records`,
        `${S} exec ${id} cat /proc/self/uid_map > ${out}/uid_map; echo exec=$?`,
        `${S} delete -f ${id} >/dev/null 2>&1; echo deleted=$?`,
        `${runtime} --root ${stateRoot} delete -f ${id} >/dev/null 2>&1; true`,
      ].join('\n'),
      { OCI_USERNS_CONFIG: config.path },
    );
    for (const step of ['first=0', 'exec=0', 'deleted=0']) assert.match(result.stdout, new RegExp(`^${step}$`, 'm'), result.all);
    const again = /^again=(\d+)$/m.exec(result.stdout)?.[1];
    assert.is(again, /^plain=(\d+)$/m.exec(result.stdout)?.[1], `the runtime's exit status: ${result.all}`);
    assert.ok(again !== '0');
    const words = (file: string) => readFileSync(join(out, file), 'utf8').replace(/^time="[^"]*" /gm, '');
    assert.is(words('again.err'), words('plain.err'), "the runtime's own words");
    assert.equal(JSON.parse(readFileSync(join(out, 'after.json'), 'utf8')), JSON.parse(readFileSync(join(out, 'before.json'), 'utf8')), 'the registry is as it was');
    assert.match(readFileSync(join(out, 'records'), 'utf8'), id, "the running container's record stays");
    const map = parseProcIdMap(readFileSync(join(out, 'uid_map'), 'utf8'), 'uid_map');
    assert.ok(map.length === 1 && map[0]!.hostID >= POOL_START, JSON.stringify(map));
    assert.equal(registry(config.stateDir), [], 'released at delete');
  });
}

lifecycle("crun's abbreviated global option (`--cgroup cgroupfs`, argp's unique prefix of --cgroup-manager) before create: the container still gets its user namespace", async () => {
  const config = writeConfig({ name: 'abbrev', runtime: 'crun' });
  const bundle = await busyboxBundle('bundle-abbrev', 'crun', ['sleep', '300']);
  const stateRoot = join(dir, 'abbrev-root');
  const id = `oci-userns-abbrev-${process.pid}`;
  const S = `${shim} --root ${stateRoot} --cgroup cgroupfs`;
  const result = await engineShell(
    [
      `${S} create --bundle ${bundle} ${id} >/dev/null 2>&1; echo create=$?`,
      `${S} start ${id}; echo start=$?`,
      `${S} exec ${id} cat /proc/self/uid_map; echo exec=$?`,
      `${S} delete -f ${id}; echo delete=$?`,
      `crun --root ${stateRoot} delete -f ${id} >/dev/null 2>&1; true`,
    ].join('\n'),
    { OCI_USERNS_CONFIG: config.path },
  );
  for (const step of ['create', 'start', 'exec', 'delete']) assert.match(result.stdout, new RegExp(`^${step}=0$`, 'm'), `${step} failed:\n${result.all}`);
  const map = parseProcIdMap(result.stdout.split('\n').filter((l) => /^\s*0\s/.test(l)).join('\n'), 'uid_map');
  assert.ok(map.length === 1 && map[0]!.hostID >= POOL_START, `not in a range of the pool: ${result.stdout}`);
  assert.equal(registry(config.stateDir), [], 'released on delete');
});
lifecycle('crun delete --regex through the shim: every container it deleted gives back its range and its record; one it did not match keeps them', async () => {
  const config = writeConfig({ name: 'regex', runtime: 'crun' });
  const stateRoot = join(dir, 'regex-root');
  const prefix = `oci-userns-regex-${process.pid}`;
  const ids = [`${prefix}-a`, `${prefix}-b`, `keep-${process.pid}`];
  const bundles = await Promise.all(ids.map((_, i) => busyboxBundle(`bundle-regex-${i}`, 'crun', ['sleep', '300'])));
  const S = `${shim} --root ${stateRoot}`;
  const result = await engineShell(
    [
      ...ids.map((id, i) => `${S} create --bundle ${bundles[i]} ${id} >/dev/null 2>&1; echo create${i}=$?`),
      `cp ${config.stateDir}/ranges.json ${dir}/regex-before.json`,
      `${S} delete --force --regex '^${prefix}-.$'; echo delete=$?`,
      `crun --root ${stateRoot} list -q > ${dir}/regex-left`,
      ...ids.map((id) => `crun --root ${stateRoot} delete -f ${id} >/dev/null 2>&1`),
      'true',
    ].join('\n'),
    { OCI_USERNS_CONFIG: config.path },
  );
  for (const step of ['create0', 'create1', 'create2', 'delete']) assert.match(result.stdout, new RegExp(`^${step}=0$`, 'm'), `${step} failed:\n${result.all}`);
  assert.equal(JSON.parse(readFileSync(join(dir, 'regex-before.json'), 'utf8')).entries.map((e: { id: string }) => e.id).sort(), [...ids].sort(), 'each had a range');
  assert.equal(readFileSync(join(dir, 'regex-left'), 'utf8').trim().split('\n'), [ids[2]], 'crun deleted what the expression matched');
  assert.equal(registry(config.stateDir).map((e) => e.id), [ids[2]], 'the ranges of the deleted ones are released, the other kept');
  for (const id of ids.slice(0, 2)) assert.not.ok(existsSync(join(config.stateDir, 'shim', id)), `the shim's record of ${id} is left`);
  assert.ok(existsSync(join(config.stateDir, 'shim', ids[2]!)), 'the record of the container not matched is kept');
});
for (const runtime of ['runc', 'crun']) {
  lifecycle(`${runtime}: exec --preserve-fds hands the container exactly the caller's descriptors`, async () => {
    const config = writeConfig({ name: `fds-${runtime}`, runtime });
    const bundle = await busyboxBundle(`bundle-fds-${runtime}`, runtime, ['sleep', '300']);
    const stateRoot = join(dir, `fds-${runtime}-root`);
    const id = `oci-userns-fds-${runtime}-${process.pid}`;
    writeFileSync(join(dir, `fd3-${runtime}`), 'caller-fd-3\n');
    writeFileSync(join(dir, `fd4-${runtime}`), 'caller-fd-4\n');
    const S = `${shim} --root ${stateRoot}`;
    // The shell lists its own descriptors (`ls /proc/$$/fd` runs in a child), each on a line of its own.
    const list = (tag: string) => `echo ${tag}; ls /proc/$$/fd; echo end`;
    const result = await engineShell(
      [
        `${S} run -d --bundle ${bundle} ${id} </dev/null >/dev/null 2>&1; echo run=$?`,
        `${S} exec --preserve-fds=2 ${id} sh -c 'cat /proc/self/fd/3 /proc/self/fd/4; ${list('two')}' 3<${dir}/fd3-${runtime} 4<${dir}/fd4-${runtime}; echo exec2=$?`,
        `${S} exec --preserve-fds 1 ${id} sh -c 'cat /proc/self/fd/3; ${list('one')}' 3<${dir}/fd3-${runtime}; echo exec1=$?`,
        `${S} exec ${id} sh -c '${list('none')}' 3<${dir}/fd3-${runtime}; echo exec0=$?`,
        `${runtime} --root ${stateRoot} delete -f ${id} >/dev/null 2>&1; true`,
      ].join('\n'),
      { OCI_USERNS_CONFIG: config.path },
    );
    for (const step of ['run', 'exec2', 'exec1', 'exec0']) assert.match(result.stdout, new RegExp(`^${step}=0$`, 'm'), `${step} failed:\n${result.all}`);
    const lines = result.stdout.split('\n');
    assert.equal(lines.filter((l) => l.startsWith('caller-fd-')), ['caller-fd-3', 'caller-fd-4', 'caller-fd-3'], result.all);
    const fds = (tag: string) => lines.slice(lines.indexOf(tag) + 1, lines.indexOf('end', lines.indexOf(tag))).join(' ');
    assert.equal([fds('two'), fds('one'), fds('none')], ['0 1 2 3 4', '0 1 2 3', '0 1 2'], result.all);
  });
}

for (const runtime of ['runc', 'crun']) {
  lifecycle(`${runtime}: run in the foreground, policy always: the shim serves the createRuntime hook, the container's status comes back, nothing is left`, async () => {
    const config = writeConfig({ name: `fg-${runtime}`, runtime });
    const bundle = await busyboxBundle(`bundle-fg-${runtime}`, runtime, ['sh', '-c', 'ls -l /proc/self/fd/ /proc/1/fd/; cat /proc/self/uid_map; exit 7']);
    const original = readFileSync(join(bundle, 'config.json'), 'utf8');
    const id = `oci-userns-fg-${runtime}-${process.pid}`;
    const root = join(dir, `fg-${runtime}-root`);
    const result = await engineShell(`${shim} --root ${root} run --bundle ${bundle} ${id} </dev/null; echo run=$?; ${runtime} --root ${root} delete -f ${id} >/dev/null 2>&1; true`, { OCI_USERNS_CONFIG: config.path });
    assert.match(result.stdout, /^run=7$/m, result.all);
    assert.not.match(result.stdout, /request|verdict|\/shim\//, `the hook's FIFOs reached the container: ${result.stdout}`);
    const map = parseProcIdMap(result.stdout.split('\n').filter((l) => /^\s*\d+\s+\d+\s+\d+\s*$/.test(l)).join('\n'), 'uid_map');
    assert.ok(map.length === 1 && map[0]!.hostID >= POOL_START, result.all);
    const served = readFileSync(config.logFile, 'utf8').split('\n').filter((l) => l.includes(`"containerId":"${id}"`) && l.includes('"servedBy":"shim"'));
    assert.ok(served.length === 1 && served[0]!.includes('"message":"createRuntime done"'), served.join('\n'));
    assert.is(readFileSync(join(bundle, 'config.json'), 'utf8'), original, "the caller's config.json changed");
    assert.equal(registry(config.stateDir), [], 'the range is released at the end of the run');
    assert.not.ok(existsSync(join(config.stateDir, 'shim', id)), "the shim's record is left");
  });
}

lifecycle('pass-through: --version and a failing state come out exactly as the real runtime gives them', async () => {
  const config = writeConfig({ name: 'pass' });
  const env = { ...process.env, OCI_USERNS_CONFIG: config.path };
  const [ours, theirs] = await Promise.all([execa(shim, ['--version'], { env, reject: false }), execa('runc', ['--version'], { reject: false })]);
  assert.equal([ours.exitCode, ours.stdout, ours.stderr], [theirs.exitCode, theirs.stdout, theirs.stderr]);
  const stateRoot = join(dir, 'pass-root');
  const [bad, badRunc] = await Promise.all([execa(shim, ['--root', stateRoot, 'state', 'nosuch'], { env, reject: false }), execa('runc', ['--root', stateRoot, 'state', 'nosuch'], { reject: false })]);
  assert.is(bad.exitCode, badRunc.exitCode);
  assert.not.equal(bad.exitCode, 0);
  assert.is(bad.stderr.replace(/time="[^"]*"/, ''), badRunc.stderr.replace(/time="[^"]*"/, ''));
});

lifecycle('errors: missing runtime, unreadable bundle, exhausted pool, each one prefixed line; config.json untouched', async () => {
  const bundle = await busyboxBundle('bundle-errors', 'runc', ['true']);
  const original = readFileSync(join(bundle, 'config.json'), 'utf8');
  const run = (config: string, args: string[]) => execa(shim, args, { env: { ...process.env, OCI_USERNS_CONFIG: config }, reject: false });

  const missing = writeConfig({ name: 'err-missing', runtime: '/nonexistent/runc' });
  const noRuntime = await run(missing.path, ['create', '--bundle', bundle, 'e1']);
  assert.is(noRuntime.exitCode, 4);
  assert.match(noRuntime.stderr, /^oci-userns runtime: the real runtime \/nonexistent\/runc is not an executable file; .*runtime\.path/);
  assert.is(readFileSync(join(bundle, 'config.json'), 'utf8'), original);
  assert.equal(registry(missing.stateDir), []);


  // A pool of one block and a runtime that creates nothing: the first container takes the block.
  const small = writeConfig({ name: 'err-pool', runtime: '/bin/true', blocks: 1 });
  const other = await busyboxBundle('bundle-errors-2', 'runc', ['true']);
  const first = await run(small.path, ['create', '--bundle', other, 'first']);
  assert.is(first.exitCode, 0, first.stderr);
  const full = await run(small.path, ['create', '--bundle', bundle, 'second']);
  assert.is(full.exitCode, 4);
  assert.match(full.stderr, /^oci-userns runtime: pool '0' has no free block of 65536 ids .* in use by 1 container: first/, full.stderr);
  assert.is(full.stderr.split('\n').length, 1);
  assert.is(readFileSync(join(bundle, 'config.json'), 'utf8'), original);
  assert.equal(registry(small.stateDir).map((e) => e.id), ['first']);
});

lifecycle('help of create and run, and what runc says of a missing bundle or config.json, come out as runc gives them, with policy always', async () => {
  const config = writeConfig({ name: 'transparent', policy: 'always' });
  const env = { ...process.env, OCI_USERNS_CONFIG: config.path };
  const bundle = await busyboxBundle('bundle-transparent', 'runc', ['true']);
  const before = readFileSync(join(bundle, 'config.json'), 'utf8');
  const empty = join(dir, 'no-config-here');
  mkdirSync(empty);
  const stateRoot = join(dir, 'transparent-root');
  const cases: Array<{ cwd: string; args: string[] }> = [
    ...['run', 'create'].flatMap((command) => ['-h', '--help'].map((help) => ({ cwd: bundle, args: [command, help] }))),
    { cwd: empty, args: ['run', 't1'] },
    { cwd: empty, args: ['create', 't1'] },
    { cwd: dir, args: ['run', '--bundle', join(dir, 'nonexistent'), 't1'] },
    { cwd: dir, args: ['create', '-b', join(dir, 'nonexistent'), 't1'] },
  ];
  const untimed = (text: string) => text.replace(/time="[^"]*"/g, '');
  for (const { cwd, args } of cases) {
    const argv = ['--root', stateRoot, ...args];
    const theirs = await execa('runc', argv, { cwd, reject: false });
    // Through the front, and through the program's own entry (`oci-userns runtime`).
    for (const [command, prefix] of [[shim, []], [PROGRAM, ['runtime']]] as const) {
      const ours = await execa(command, [...prefix, ...argv], { cwd, env, reject: false });
      assert.equal([ours.exitCode, ours.stdout, untimed(ours.stderr)], [theirs.exitCode, theirs.stdout, untimed(theirs.stderr)], `${command} ${args.join(' ')}`);
    }
  }
  assert.is(readFileSync(join(bundle, 'config.json'), 'utf8'), before);
  assert.equal(registry(config.stateDir), []);
});

for (const runtime of ['runc', 'crun']) {
  lifecycle(`${runtime}: containers from one bundle, policy always: the caller's config.json as it was; a second while the first runs shares the range the open bundle's tree was shifted into, and outlives the first`, async () => {
    const config = writeConfig({ name: `twice-${runtime}`, runtime });
    const bundle = await busyboxBundle(`bundle-twice-${runtime}`, runtime, ['sleep', '300']);
    const original = readFileSync(join(bundle, 'config.json'), 'utf8');
    const stateRoot = join(dir, `twice-${runtime}-root`);
    const [first, second] = [1, 2].map((n) => `oci-userns-twice${n}-${runtime}-${process.pid}`);
    const out = join(dir, `out-twice-${runtime}`);
    mkdirSync(out);
    const S = `${shim} --root ${stateRoot}`;
    const result = await engineShell(
      [
        `${S} run -d --bundle ${bundle} ${first} </dev/null >/dev/null 2>&1; echo first=$?`,
        `cp ${bundle}/config.json ${out}/config-first.json`,
        `${S} exec ${first} cat /proc/self/uid_map > ${out}/uid_map-first`,
        `${S} run -d --bundle ${bundle} ${second} </dev/null >/dev/null 2>&1; echo second=$?`,
        `cp ${bundle}/config.json ${out}/config-second.json`,
        `${S} exec ${second} cat /proc/self/uid_map > ${out}/uid_map-second`,
        `${S} delete -f ${first} >/dev/null 2>&1; echo deleted=$?`,
        `${S} exec ${second} ls /bin >/dev/null; echo alive=$?`,
        ...[first, second].map((id) => `${S} delete -f ${id} >/dev/null 2>&1; ${runtime} --root ${stateRoot} delete -f ${id} >/dev/null 2>&1; true`),
      ].join('\n'),
      { OCI_USERNS_CONFIG: config.path },
    );
    for (const step of ['first=0', 'second=0', 'deleted=0', 'alive=0']) assert.match(result.stdout, new RegExp(`^${step}$`, 'm'), result.all);
    for (const name of ['first', 'second']) assert.is(readFileSync(join(out, `config-${name}.json`), 'utf8'), original, `config.json after ${name}`);
    // From the caller's spec (not the first's, which named the first's range and hooks), in the range of the pool the tree was shifted into.
    const maps = ['first', 'second'].map((name) => parseProcIdMap(readFileSync(join(out, `uid_map-${name}`), 'utf8'), 'uid_map'));
    assert.ok(maps[0]!.length === 1 && maps[0]![0]!.hostID >= POOL_START, JSON.stringify(maps[0]));
    assert.equal(maps[1], maps[0]);
    assert.match(readFileSync(config.logFile, 'utf8'), `container ${second} shares the range of container ${first}`);
    assert.equal(registry(config.stateDir), []);
  });
}

lifecycle('a spec with a user namespace already is left byte for byte; policy systemd leaves a plain container alone', async () => {
  const config = writeConfig({ name: 'keep', runtime: '/bin/true' });
  const withUserns = await busyboxBundle('bundle-userns', 'runc', ['sh']);
  const spec = JSON.parse(readFileSync(join(withUserns, 'config.json'), 'utf8'));
  spec.linux.namespaces.push({ type: 'user' });
  spec.linux.uidMappings = spec.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
  writeFileSync(join(withUserns, 'config.json'), JSON.stringify(spec));
  const before = readFileSync(join(withUserns, 'config.json'), 'utf8');
  const env = { ...process.env, OCI_USERNS_CONFIG: config.path };
  assert.is((await execa(shim, ['create', '-b', withUserns, 'k1'], { env, reject: false })).exitCode, 0);
  assert.is(readFileSync(join(withUserns, 'config.json'), 'utf8'), before);

  const systemdPolicy = writeConfig({ name: 'keep-systemd', runtime: '/bin/true', policy: 'systemd' });
  const plain = await busyboxBundle('bundle-plain', 'runc', ['sh']);
  const plainBefore = readFileSync(join(plain, 'config.json'), 'utf8');
  assert.is((await execa(shim, ['create', `--bundle=${plain}`, 'k2'], { env: { ...process.env, OCI_USERNS_CONFIG: systemdPolicy.path }, reject: false })).exitCode, 0);
  assert.is(readFileSync(join(plain, 'config.json'), 'utf8'), plainBefore);
  assert.equal(registry(config.stateDir).concat(registry(systemdPolicy.stateDir)), []);
});

lifecycle('the real runtime gets the signals, and its exit status and stderr come back unchanged', async () => {
  const fake = join(dir, 'fake-runtime');
  writeFileSync(fake, `#!/bin/sh\ncase "$1" in\n  fail) echo "boom: $*" >&2; exit 3 ;;\nesac\ntrap 'echo got-term; exit 42' TERM\ntrap 'echo got-winch' WINCH\necho ready\nwhile :; do sleep 0.05; done\n`);
  chmodSync(fake, 0o755);
  const config = writeConfig({ name: 'signals', runtime: fake });
  const env = { ...process.env, OCI_USERNS_CONFIG: config.path };
  const failed = await execa(shim, ['fail', '--flag', 'x'], { env, reject: false });
  assert.equal([failed.exitCode, failed.stdout, failed.stderr], [3, '', 'boom: fail --flag x']);

  const child = spawn(shim, ['state', 'x'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const seen = (text: string) => new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${text}' from the fake runtime in 20 s: ${stdout}`)), 20_000);
    const check = () => stdout.includes(text) && (clearTimeout(timer), child.stdout.off('data', check), resolve());
    child.stdout.on('data', check);
    check();
  });
  child.stdout.on('data', (chunk) => (stdout += chunk));
  await seen('ready');
  // One signal at a time: a shell runs pending traps in signal-number order, so TERM would overtake a WINCH still pending on a loaded machine.
  child.kill('SIGWINCH');
  await seen('got-winch');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const code = await exited;
  clearTimeout(timer);
  assert.is(code, 42, stdout);
  assert.match(stdout, /got-winch[\s\S]*got-term/);
});

lifecycle('the Node shim hands the runtime every signal it can catch, and stays until the runtime ends', async () => {
  const fake = join(dir, 'fake-runtime-signals');
  // Numbers, not names: 10 USR1, 14 ALRM, 20 TSTP, 30 PWR, 24 XCPU; TERM ends it.
  writeFileSync(fake, `#!/bin/sh\nfor n in 10 14 20 30 24; do trap "echo got-$n" $n; done\ntrap 'echo got-term; exit 42' TERM\necho ready\nwhile :; do sleep 0.05; done\n`);
  chmodSync(fake, 0o755);
  const config = writeConfig({ name: 'signals-node', runtime: fake });
  // `oci-userns runtime` is the Node shim itself; the front would exec the runtime for `state`.
  const child = spawn(PROGRAM, ['runtime', 'state', 'x'], { env: { ...process.env, OCI_USERNS_CONFIG: config.path }, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.stdout.on('data', (chunk) => (stdout += chunk));
  const seen = (text: string) => new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${text}' from the fake runtime in 20 s: ${stdout}`)), 20_000);
    const check = () => stdout.includes(text) && (clearTimeout(timer), child.stdout.off('data', check), resolve());
    child.stdout.on('data', check);
    check();
  });
  try {
    await seen('ready');
    for (const [signal, n] of [['SIGUSR1', 10], ['SIGALRM', 14], ['SIGTSTP', 20], ['SIGPWR', 30], ['SIGXCPU', 24]] as const) {
      child.kill(signal);
      await seen(`got-${n}`);
    }
    child.kill('SIGTERM');
    assert.is(await exited, 42, stdout);
  } finally {
    child.kill('SIGKILL');
  }
});

const podmanNames: string[] = [];
if (await commandExists('podman')) {
  lifecycle('podman --runtime <the shim> --systemd=always, no --userns: two systemd containers boot in disjoint user namespaces; podman rm frees both ranges', async () => {
    if ((await execa('podman', ['image', 'exists', IMAGE], { reject: false })).exitCode !== 0) {
      const { stdout: tarball } = await execa(join(root, 'scripts', 'debian-rootfs.sh'));
      await execa('podman', ['import', '--change', 'CMD ["/sbin/init"]', tarball.trim(), IMAGE]);
    }
    const config = writeConfig({ name: 'podman', policy: 'systemd' });
    // conmon runs the runtime with an environment of its own: the config path goes in a wrapper, as install.sh would install it.
    const runtime = join(dir, 'podman-runtime');
    writeFileSync(runtime, `#!/bin/sh\nOCI_USERNS_CONFIG=${config.path} exec ${shim} "$@"\n`);
    chmodSync(runtime, 0o755);
    const names = [1, 2].map((n) => `oci-userns-shim-podman${n}-${process.pid}`);
    podmanNames.push(...names);
    const out = join(dir, 'out-podman');
    mkdirSync(out);
    const result = await engineShell(
      [
        ...names.map((name) => `podman run -d -t --name ${name} --runtime ${runtime} --systemd=always ${PODMAN_RUN.join(' ')} ${IMAGE} /sbin/init >/dev/null || echo run-failed=${name}`),
        ...names.flatMap((name, i) => [
          `pid=$(podman inspect -f '{{.State.Pid}}' ${name})`,
          `cat /proc/$pid/uid_map > ${out}/uid_map${i}`,
          // runc exec cannot join podman's network namespace from inside the user namespace; nsenter orders the joins itself.
          `for t in $(seq 60); do nsenter -t $pid -a test -S /run/systemd/private && break; sleep 0.5; done`,
          `echo state${i}=$(timeout 90 nsenter -t $pid -a systemctl is-system-running --wait)`,
        ]),
        `cp ${config.stateDir}/ranges.json ${out}/ranges.json`,
        ...names.map((name) => `podman logs --tail 10 ${name} > ${out}/log-${name} 2>&1`),
        `podman rm -f -t 5 ${names.join(' ')} >/dev/null; echo rm=$?`,
      ].join('\n'),
    );
    for (const i of [0, 1]) assert.match(result.stdout, new RegExp(`^state${i}=(running|degraded)$`, 'm'), result.all);
    const maps = [0, 1].map((i) => parseProcIdMap(readFileSync(join(out, `uid_map${i}`), 'utf8'), 'uid_map'));
    for (const map of maps) assert.ok(map[0]!.hostID >= POOL_START && map[0]!.hostID !== 0, `not a fresh range: ${JSON.stringify(map)}`);
    const [a, b] = maps.map((m) => m[0]!);
    assert.ok(a!.hostID + a!.size <= b!.hostID || b!.hostID + b!.size <= a!.hostID, `ranges overlap: ${JSON.stringify(maps)}`);
    const running = JSON.parse(readFileSync(join(out, 'ranges.json'), 'utf8')).entries;
    assert.equal(running.map((e: { source: string }) => e.source), ['shim', 'shim']);
    assert.match(result.stdout, /^rm=0$/m, result.all);
    assert.equal(registry(config.stateDir), [], 'ranges still registered after podman rm');
  });
} else {
  console.log('SKIPPED shim e2e podman case: podman is not installed');
}

lifecycle.after(async () => {
  if (podmanNames.length > 0) await engineShell(`podman rm -f --ignore ${podmanNames.join(' ')} >/dev/null`);
  rmSync(dir, { recursive: true, force: true });
});
lifecycle.run();
