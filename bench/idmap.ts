// npm run bench:idmap: whole-process time of the hook's createRuntime on a
// 100k-inode directory rootfs (BENCH_INODES) owned by host root: the idmap
// route against the hook's no-op path (a container without a user
// namespace), the chown route (shift.method chown, the tree reset untimed
// before each run) and the helper alone, interleaved, medians of BENCH_RUNS
// runs (default 10). Issue 12's goal: idmap at most 1.3x the no-op path.
// Each idmap run gets a fresh "container": a process in a new user and mount
// namespace (0 -> 400000), as the runtime leaves it at createRuntime.
// Needs root, unshare, make and cc; builds the program and the helper.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compare, printTable, type Candidate } from './measure';

const repo = join(import.meta.dirname, '..');
const runs = Number(process.env.BENCH_RUNS ?? 10);
const size = Number(process.env.BENCH_INODES ?? 100_000);
const HOST_ID = 400000;

function run(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Directories of 200 empty files owned by host root, `total` inodes in all. */
function generate(root: string, total: number): void {
  for (let d = 0, n = 0; n < total; d++) {
    const dir = join(root, `d${d}`);
    mkdirSync(dir, { recursive: true });
    n++;
    for (let i = 0; i < 200 && n < total; i++, n++) writeFileSync(join(dir, `f${i}`), '');
  }
}

const work = mkdtempSync(join('/var/tmp', 'oci-userns-bench-idmap-'));
chmodSync(work, 0o755);
run(process.execPath, [join(repo, 'scripts', 'build.mjs')]);
run('make', ['-s', '-C', join(repo, 'native')]);
const program = join(repo, 'dist', 'oci-userns.cjs');
const helper = join(repo, 'dist', 'oci-userns-idmap');

/**
 * A bundle whose rootfs is `rootfs`, behind a parent closed to other host
 * users (the safety rule), with the fixture's spec: /sys/fs/cgroup stays
 * read-only, so the hook plans no delegation and the rows time the rootfs
 * step alone.
 */
function bundle(name: string, rootfs: string, userns: boolean): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const spec = JSON.parse(readFileSync(join(repo, 'test', 'fixtures', 'config-runc-spec-userns.json'), 'utf8'));
  spec.hooks = {};
  spec.root = { path: rootfs, readonly: false };
  spec.linux.uidMappings = [{ containerID: 0, hostID: HOST_ID, size: 65536 }];
  spec.linux.gidMappings = [{ containerID: 0, hostID: HOST_ID, size: 65536 }];
  if (!userns) spec.linux.namespaces = spec.linux.namespaces.filter((ns: { type: string }) => ns.type !== 'user');
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  return dir;
}

function config(name: string, shift: Record<string, string>): string {
  const path = join(work, `${name}.json`);
  writeFileSync(path, JSON.stringify({ logFile: join(work, `${name}.log`), stateDir: join(work, `state-${name}`), overlap: 'warn', shift }));
  return path;
}

let holder: ChildProcess | undefined;
/** A fresh process in a new user and mount namespace mapping 0 -> HOST_ID; the previous one is killed. */
function freshContainer(): number {
  holder?.kill('SIGKILL');
  holder = spawn('unshare', ['--user', '--mount', '--propagation', 'private', 'sleep', '600'], { stdio: 'ignore' });
  const pid = holder.pid!;
  const own = readlinkSync('/proc/self/ns/user');
  while (readlinkSync(`/proc/${pid}/ns/user`) === own) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
  for (const map of ['uid_map', 'gid_map']) writeFileSync(`/proc/${pid}/${map}`, `0 ${HOST_ID} 65536\n`);
  return pid;
}

const state = (id: string, dir: string, pid: number) => JSON.stringify({ ociVersion: '1.0.2', id, status: 'creating', pid, bundle: dir });

try {
  // Two trees: the chown route leaves its tree shifted, which the idmap route would then skip.
  const trees = ['idmap', 'chown'].map((name) => {
    const closed = join(work, `closed-${name}`);
    mkdirSync(closed, { mode: 0o700 });
    chownSync(closed, HOST_ID, HOST_ID);
    generate(join(closed, 'rootfs'), size);
    return join(closed, 'rootfs');
  });
  const [rootfs, chownRootfs] = trees as [string, string];
  const inodes = run('find', [rootfs, '-xdev']).split('\n').length - 1;
  const plain = bundle('plain', rootfs, false);
  const userns = bundle('userns', rootfs, true);
  const chownBundle = bundle('chown', chownRootfs, true);
  const hook = (name: string, dir: string, cfg: string, prepare?: (c: Candidate) => void): Candidate => {
    const candidate: Candidate = { name, command: process.execPath, args: [program, 'hook', 'createRuntime', '--config', cfg], input: state(name.split(' ')[0]!, dir, process.pid) };
    if (prepare) candidate.prepare = () => prepare(candidate);
    return candidate;
  };
  const withContainer = (id: string, dir: string) => (c: Candidate) => {
    c.input = state(id, dir, freshContainer());
  };
  const helperAlone: Candidate = { name: 'helper alone (mount in the container namespace)', command: helper, args: [] };
  helperAlone.prepare = () => {
    const pid = freshContainer();
    helperAlone.args = ['mount', '--mntns', `/proc/${pid}/ns/mnt`, '--userns', `/proc/${pid}/ns/user`, rootfs];
  };
  const candidates: Candidate[] = [
    hook('no-op (no user namespace)', plain, config('noop', {})),
    hook('idmap (shift.method auto)', userns, config('idmap', { method: 'auto' }), withContainer('idmap', userns)),
    hook('chown (shift.method chown)', chownBundle, config('chown', { method: 'chown' }), (c) => {
      run('chown', ['-R', '-P', '0:0', chownRootfs]);
      spawnSync('setfattr', ['-x', 'trusted.oci-userns.shift', chownRootfs], { stdio: 'ignore' });
      rmSync(join(work, 'state-chown'), { recursive: true, force: true });
      withContainer('chown', chownBundle)(c);
    }),
    helperAlone,
  ];
  const medians = compare(candidates, runs, 1);
  const noop = medians.get(candidates[0]!.name)!;
  console.log(`bench:idmap: the hook's createRuntime on ${inodes} inodes, ${runs} interleaved runs, medians (${new Date().toISOString().slice(0, 10)}, ${process.version})`);
  printTable([['createRuntime', 'median ms', 'vs no-op'], ...candidates.map((c): [string, string, string] => [c.name, medians.get(c.name)!.toFixed(1), `${(medians.get(c.name)! / noop).toFixed(2)}x`])]);
  const idmapLog = readFileSync(join(work, 'idmap.log'), 'utf8').trim().split('\n').map((line) => JSON.parse(line)).filter((l) => l.shift?.action === 'idmapped');
  const syscalls = idmapLog.map((l) => l.shift.syscallUs as number).sort((a, b) => a - b);
  const steps = idmapLog.map((l) => l.shift.ms as number).sort((a, b) => a - b);
  console.log(`idmap rootfs step inside the hook: median ${steps[steps.length >> 1]} ms; the helper's system calls: median ${syscalls[syscalls.length >> 1]} µs (${idmapLog.length} runs)`);
} finally {
  holder?.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}
