// npm run bench:shim: what the runtime shim adds, as ratios of medians
// against plain runc, in one interleaved run:
//   - `state` of a running container and `exec true` into it, the calls a
//     Kubernetes node makes most, which the front (bin/oci-userns-runtime)
//     hands straight to runc;
//   - `runc run` of a busybox `true`, pass-through: the shim decides to
//     leave the spec alone (policy 'annotation'), against plain runc;
//   - acting: the shim allocates, lends config.json the container's spec,
//     and serves the createRuntime hook from its own process (one Node.js
//     start in all), against plain runc with the same user namespace and an
//     already shifted rootfs;
//   - the floor of any shim written for Node.js: a node process that only
//     runs that same `runc run` and waits for it.
// Needs root, runc, busybox-static and cgroup2; on a hybrid host it reruns
// itself in a private mount namespace whose /sys/fs/cgroup is cgroup2.
// Runs the built program (dist/oci-userns.cjs, or $OCI_USERNS_PROGRAM)
// behind the front, as install.sh lays them out;
// BENCH_SHIM_PROGRAMS="NAME=PATH,..." puts several builds in the same run
// (e.g. main's, built to another dir), each behind the front of its tree
// (PATH/../../bin/oci-userns-runtime) with a state dir of its own.

import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cgroup2MountPoint } from '../lib/doctor/doctor';
import { compare, printTable, type Candidate } from './measure';

const repo = join(import.meta.dirname, '..');
const programs = (process.env.BENCH_SHIM_PROGRAMS ?? `dist=${process.env.OCI_USERNS_PROGRAM ?? join(repo, 'dist', 'oci-userns.cjs')}`).split(',').map((spec) => {
  const [name, path] = spec.split('=', 2) as [string, string];
  const front = join(dirname(path), '..', 'bin', 'oci-userns-runtime');
  return { name, path, front: existsSync(front) ? front : join(repo, 'bin', 'oci-userns-runtime') };
});
const runs = Number(process.env.BENCH_RUNS ?? 20);
const POOL_START = 1879048192;

const mountPoint = cgroup2MountPoint(readFileSync('/proc/self/mountinfo', 'utf8'));
if (mountPoint === undefined) throw new Error('bench:shim needs a cgroup2 hierarchy');
if (mountPoint !== '/sys/fs/cgroup') {
  const rerun = spawnSync(
    'unshare',
    ['-m', '--propagation', 'private', 'sh', '-c', 'umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && exec "$0" "$@"', process.execPath, ...process.execArgv, ...process.argv.slice(1)],
    { stdio: 'inherit' },
  );
  process.exit(rerun.status ?? 1);
}
for (const { path } of programs) if (!existsSync(path)) throw new Error(`${path} is not built: npm run build`);

const work = mkdtempSync(join(tmpdir(), 'oci-userns-bench-shim-'));
chmodSync(work, 0o755);
const runtimeRoot = join(work, 'runc');

/** The front and the program side by side, as install.sh lays them out; returns the front. */
function install(program: (typeof programs)[number]): string {
  const dir = join(work, `bin-${program.name}`);
  mkdirSync(dir);
  symlinkSync(program.front, join(dir, 'oci-userns-runtime'));
  symlinkSync(program.path, join(dir, 'oci-userns'));
  return join(dir, 'oci-userns-runtime');
}

function writeConfig(name: string, policy: string): string {
  const line = `0:${POOL_START}:${65536 * 4}\n`;
  writeFileSync(join(work, 'subuid'), line);
  writeFileSync(join(work, 'subgid'), line);
  const path = join(work, `${name}.json`);
  const pool = { user: '0', subuidFile: join(work, 'subuid'), subgidFile: join(work, 'subgid') };
  writeFileSync(path, JSON.stringify({ stateDir: join(work, `state-${name}`), logFile: join(work, `${name}.log`), pool, runtime: { path: 'runc', policy } }));
  return path;
}

function chownTree(path: string, id: number): void {
  lchownSync(path, id, id);
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.isDirectory()) chownTree(join(path, entry.name), id);
    else lchownSync(join(path, entry.name), id, id);
  }
}

/** A busybox bundle running `true`; with `hostId`, in a user namespace mapped there, its rootfs owned accordingly. */
function bundle(name: string, hostId?: number, args = ['true']): { dir: string } {
  const dir = join(work, name);
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev']) mkdirSync(join(rootfs, d));
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of ['true', 'sleep']) symlinkSync('busybox', join(rootfs, 'bin', applet));
  const made = spawnSync('runc', ['spec'], { cwd: dir });
  if (made.status !== 0) throw new Error(`runc spec: ${made.stderr}`);
  const spec = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = args;
  delete spec.process.rlimits;
  delete spec.linux.resources;
  if (hostId !== undefined) {
    for (const type of ['user', 'cgroup']) if (!spec.linux.namespaces.some((ns: { type: string }) => ns.type === type)) spec.linux.namespaces.push({ type });
    spec.linux.uidMappings = spec.linux.gidMappings = [{ containerID: 0, hostID: hostId, size: 65536 }];
    chownTree(rootfs, hostId);
    chownSync(rootfs, hostId, hostId);
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, 2));
  return { dir };
}

try {
  const plain = bundle('plain');
  const userns = bundle('userns', POOL_START);
  const run = (name: string, command: string, dir: string, env: NodeJS.ProcessEnv = process.env): Candidate => ({
    name,
    command,
    args: ['--root', runtimeRoot, 'run', '--bundle', dir, `bench-${name.replace(/\W+/g, '-')}`],
    options: { env },
  });
  const sleeper = bundle('sleeper', undefined, ['sleep', '100000']);
  const started = spawnSync('runc', ['--root', runtimeRoot, 'run', '-d', '--bundle', sleeper.dir, 'bench-running'], { stdio: 'ignore' });
  if (started.status !== 0) throw new Error(`runc run -d of the container to call state and exec on: exit ${started.status}`);
  const call = (name: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Candidate => ({ name, command, args: ['--root', runtimeRoot, ...args], options: { env } });
  const floor = run('node running runc run, user namespace', process.execPath, userns.dir);
  const label = (name: string, program: (typeof programs)[number]) => (programs.length > 1 ? `${name} [${program.name}]` : name);
  const shims = programs.map((program) => {
    const shim = install(program);
    const env = (policy: string) => ({ ...process.env, OCI_USERNS_CONFIG: writeConfig(`${program.name}-${policy}`, policy) });
    const pass = env('annotation');
    return {
      state: call(label('shim state', program), shim, ['state', 'bench-running'], pass),
      exec: call(label('shim exec true', program), shim, ['exec', 'bench-running', 'true'], pass),
      pass: run(label('shim run, pass-through', program), shim, plain.dir, pass),
      acting: run(label('shim run, acting (userns, hooks)', program), shim, bundle(`acting-${program.name}`).dir, env('always')),
    };
  });
  // The order of the issue's figures, each runc call before the shims' own. Order matters here: a
  // runc run soon after another is faster on this machine than after a pause (17.6 ms back to back,
  // 30.1 after 100 ms of sleep, 26.9 after node -e 0), and the runc a shim starts follows Node's start.
  const candidates: Candidate[] = [
    // The floor of a call that starts Node.js: the acting run starts it once (the shim serves its createRuntime hook).
    { name: 'node -e 0', command: process.execPath, args: ['-e', '0'] },
    call('runc state', 'runc', ['state', 'bench-running']),
    ...shims.map((c) => c.state),
    call('runc exec true', 'runc', ['exec', 'bench-running', 'true']),
    ...shims.map((c) => c.exec),
    run('runc run', 'runc', plain.dir),
    ...shims.map((c) => c.pass),
    run('runc run, user namespace', 'runc', userns.dir),
    { ...floor, args: ['-e', "process.exitCode = require('node:child_process').spawnSync('runc', process.argv.slice(1), { stdio: 'inherit' }).status", '--', ...floor.args] },
    ...shims.map((c) => c.acting),
  ];
  const medians = compare(candidates, runs);
  const ms = (name: string) => medians.get(name)!;
  const row = (name: string, against?: string): [string, string, string, string] => [name, ms(name).toFixed(1), against ?? '', against ? (ms(name) / ms(against)).toFixed(2) : ''];
  console.log(`oci-userns runtime shim against runc, ${runs} interleaved runs, medians (${new Date().toISOString().slice(0, 10)}, ${process.version})`);
  printTable([
    ['what', 'median ms', 'against', 'ratio'],
    row('node -e 0'),
    row('runc state'),
    ...programs.map((p) => row(label('shim state', p), 'runc state')),
    row('runc exec true'),
    ...programs.map((p) => row(label('shim exec true', p), 'runc exec true')),
    row('runc run'),
    ...programs.map((p) => row(label('shim run, pass-through', p), 'runc run')),
    row('runc run, user namespace'),
    row(floor.name, 'runc run, user namespace'),
    ...programs.map((p) => row(label('shim run, acting (userns, hooks)', p), 'runc run, user namespace')),
  ]);
} finally {
  spawnSync('runc', ['--root', runtimeRoot, 'delete', '-f', 'bench-running'], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
}
