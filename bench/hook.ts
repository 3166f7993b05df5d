// npm run bench:hook: whole-process latency of the hook on the paths every
// container start pays for, against the Node.js floor (`node -e 0`), in one
// interleaved run; then `runc run` of busybox with and without the hook.
// Needs root (it makes a cgroup). BENCH_HOOK_PROGRAMS="NAME=PATH [NODE FLAG...],..."
// puts other builds in the same run (e.g. main's, built to another dir).

import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroup2Mount } from '../lib/sys/mountinfo';
import { compare, peakRssKiB, printTable, type Candidate } from './measure';

const repo = join(import.meta.dirname, '..');
const programs = (process.env.BENCH_HOOK_PROGRAMS ?? `dist=${join(repo, 'dist', 'oci-userns.cjs')}`).split(',').map((spec) => {
  const [name, command] = spec.split('=', 2) as [string, string];
  const [path, ...flags] = command.trim().split(/\s+/);
  return { name, args: [...flags, path!] };
});
const runs = Number(process.env.BENCH_RUNS ?? 30);
const HOST_ID = 400000;

const work = mkdtempSync(join(tmpdir(), 'oci-userns-bench-hook-'));
chmodSync(work, 0o755);
const config = join(work, 'oci-userns.json');
writeFileSync(config, JSON.stringify({ logFile: join(work, 'hook.log'), stateDir: join(work, 'state') }));
mkdirSync(join(work, 'state'), { mode: 0o700 });

const mount = cgroup2Mount(readFileSync('/proc/self/mountinfo', 'utf8'));
if (!mount) throw new Error('bench:hook needs a cgroup2 hierarchy');
const cgroup = join(mount.mountPoint, `oci-userns-bench-${process.pid}`);
const sleeper = spawn('sleep', ['3600'], { stdio: 'ignore' });

function bundle(name: string, userns: boolean): string {
  const dir = join(work, name);
  mkdirSync(join(dir, 'rootfs'), { recursive: true });
  const spec = JSON.parse(readFileSync(join(repo, 'test', 'fixtures', 'config-runc-spec-userns.json'), 'utf8'));
  spec.hooks = {};
  spec.mounts = spec.mounts.map((m: { destination: string; options?: string[] }) =>
    m.destination === '/sys/fs/cgroup' ? { ...m, options: (m.options ?? []).filter((o) => o !== 'ro') } : m,
  );
  spec.linux.uidMappings = [{ containerID: 0, hostID: HOST_ID, size: 65536 }];
  spec.linux.gidMappings = [{ containerID: 0, hostID: HOST_ID, size: 65536 }];
  if (!userns) spec.linux.namespaces = spec.linux.namespaces.filter((ns: { type: string }) => ns.type !== 'user');
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  chownSync(join(dir, 'rootfs'), HOST_ID, HOST_ID);
  return dir;
}

const state = (dir: string, status: string, pid?: number) => JSON.stringify({ ociVersion: '1.0.2-dev', id: `bench-${status}`, status, pid, bundle: dir });

try {
  mkdirSync(cgroup);
  writeFileSync(join(cgroup, 'cgroup.procs'), String(sleeper.pid));
  const plain = bundle('plain', false);
  const userns = bundle('userns', true);
  const resetCgroup = () => chownSync(cgroup, 0, 0);
  const candidates: Candidate[] = [{ name: 'node -e 0', command: process.execPath, args: ['-e', '0'] }];
  let stateFiles = 0;
  for (const program of programs) {
    const label = programs.length > 1 ? ` [${program.name}]` : '';
    // The state as runc hands it over: in a pipe it has filled and closed (measure.ts stdinFile).
    const hook = (name: string, stage: string, input: string, prepare?: () => void): Candidate => {
      const stdinFile = join(work, `state-${(stateFiles += 1)}.json`);
      writeFileSync(stdinFile, input);
      return { name: name + label, command: process.execPath, args: [...program.args, 'hook', stage, '--config', config], stdinFile, prepare };
    };
    candidates.push(
      hook('createRuntime, no user namespace (no-op)', 'createRuntime', state(plain, 'creating', sleeper.pid)),
      hook('createRuntime, user namespace (delegation)', 'createRuntime', state(userns, 'creating', sleeper.pid), resetCgroup),
      hook('poststop, user namespace', 'poststop', state(userns, 'stopped')),
    );
  }
  const medians = compare(candidates, runs);
  const floor = medians.get('node -e 0')!;
  console.log(`oci-userns hook latency, ${runs} interleaved runs, medians (${new Date().toISOString().slice(0, 10)}, ${process.version})`);
  printTable([
    ['path', 'median ms', 'x node -e 0', 'peak RSS MiB'],
    ...candidates.map((c): [string, string, string, string] => [
      c.name,
      medians.get(c.name)!.toFixed(1),
      (medians.get(c.name)! / floor).toFixed(2),
      (peakRssKiB(c) / 1024).toFixed(1),
    ]),
  ]);
} finally {
  sleeper.kill();
  spawnSync('sleep', ['0.1']);
  try {
    rmdirSync(cgroup);
  } catch {
    // the sleeper may take a moment to leave; the cgroup is empty and harmless
  }
  rmSync(work, { recursive: true, force: true });
}
