// npm run bench:shift: whole-process time of `oci-userns shift` against GNU
// `chown -R` and systemd-nspawn's chown mode, on a generated 100k-inode tree
// and on the Debian rootfs, interleaved, medians of BENCH_RUNS runs (default 5).
// Every candidate starts from a tree owned by host root (reset untimed).
// Needs root, systemd-nspawn, and scripts/debian-rootfs.sh's tarball. Builds
// the program first and times the built dist/oci-userns.cjs. With a C
// compiler it also times bench/floor.c, the system calls no full-fidelity
// shift can skip (lstat, llistxattr, lchown per inode) on one and two
// threads: the lower bound for any implementation on this machine.

import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compare, peakRssKiB, printTable, type Candidate } from './measure';

const repo = join(import.meta.dirname, '..');
const runs = Number(process.env.BENCH_RUNS ?? 5);
const size = Number(process.env.BENCH_INODES ?? 100_000);
const HOST = 196608; // 65536-aligned: nspawn's chown mode accepts nothing else

function run(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Directories of 200 files (every 40th a symlink out of the tree, every 97th a hard link), a few setuid files, ACLs and caps. */
function generate(root: string, total: number): void {
  let n = 0;
  const dir = (path: string, depth: number) => {
    mkdirSync(path, { recursive: true });
    n++;
    for (let i = 0; i < (depth < 2 ? 20 : 200) && n < total; i++, n++) {
      const file = join(path, `f${i}`);
      if (i % 40 === 7) symlinkSync(`${'../'.repeat(depth + 3)}etc/passwd`, file);
      else if (i % 97 === 3) linkSync(join(path, 'f0'), file);
      else {
        writeFileSync(file, i % 5 ? '' : 'x'.repeat(100));
        chownSync(file, i % 3, i % 7);
      }
    }
    for (let i = 0; i < (depth < 2 ? 12 : 0) && n < total; i++) dir(join(path, `d${i}`), depth + 1);
  };
  for (let top = 0; n < total; top++) dir(join(root, `top${top}`), 0);
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  writeFileSync(join(root, 'usr/bin/su'), '');
  chmodSync(join(root, 'usr/bin/su'), 0o4755);
  writeFileSync(join(root, 'usr/bin/ping'), '');
  run('setcap', ['cap_net_raw=ep', join(root, 'usr/bin/ping')]);
  run('setfacl', ['-m', 'u:1000:rx,g:50:r', join(root, 'usr/bin/su')]);
}

/** nspawn runs `true` from the tree; a static busybox serves. */
function addTrue(root: string): void {
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  if (!existsSync(join(root, 'usr/bin/true'))) run('cp', ['/bin/busybox', join(root, 'usr/bin/true')]);
  mkdirSync(join(root, 'etc'), { recursive: true });
  if (!existsSync(join(root, 'etc/os-release'))) writeFileSync(join(root, 'etc/os-release'), 'ID=bench\n');
}

const work = mkdtempSync(join('/var/tmp', 'oci-userns-bench-shift-'));
chmodSync(work, 0o755);
const config = join(work, 'oci-userns.json');
writeFileSync(config, JSON.stringify({ logFile: join(work, 'shift.log'), stateDir: join(work, 'state') }));

run(process.execPath, [join(repo, 'scripts', 'build.mjs')]);
const program = join(repo, 'dist', 'oci-userns.cjs');
const floor = join(work, 'floor');
const compiled = spawnSync('cc', ['-O2', '-pthread', '-o', floor, join(repo, 'bench', 'floor.c')], { encoding: 'utf8' });
if (compiled.status !== 0) console.log(`bench:shift: no floor rows: cannot compile bench/floor.c (${compiled.error?.message ?? compiled.stderr.trim()})`);

function reset(tree: string): void {
  run('chown', ['-R', '-P', '0:0', tree]);
  spawnSync('setfattr', ['-x', 'trusted.oci-userns.shift', tree], { stdio: 'ignore' });
  rmSync(join(work, 'state'), { recursive: true, force: true });
}

function candidates(tree: string): Candidate[] {
  return [
    { name: 'chown -R', command: 'chown', args: ['-R', '-P', `${HOST}:${HOST}`, tree], prepare: () => reset(tree) },
    {
      name: 'systemd-nspawn chown',
      command: 'systemd-nspawn',
      args: ['-q', '--register=no', '--keep-unit', `--private-users=${HOST}:65536`, '--private-users-ownership=chown', '-D', tree, '/usr/bin/true'],
      prepare: () => reset(tree),
    },
    { name: 'oci-userns shift', command: process.execPath, args: [program, 'shift', tree, '--to', String(HOST), '--config', config], prepare: () => reset(tree) },
    ...(compiled.status === 0 ? [1, 2].map((threads) => ({ name: `floor (C, ${threads} thread${threads > 1 ? 's' : ''})`, command: floor, args: [tree, String(threads), String(HOST)], prepare: () => reset(tree) })) : []),
  ];
}

function bench(label: string, tree: string): Array<[string, ...string[]]> {
  const inodes = run('find', [tree, '-xdev']).split('\n').length - 1;
  const list = candidates(tree);
  const medians = compare(list, runs, 1);
  const floor = medians.get('chown -R')!;
  const nspawn = medians.get('systemd-nspawn chown')!;
  const ours = list.find((c) => c.name === 'oci-userns shift')!;
  const rss = peakRssKiB(ours);
  ours.prepare!();
  return list.map((c) => {
    const ms = medians.get(c.name)!;
    return [`${label} (${inodes} inodes)`, c.name, `${(ms / 1000).toFixed(3)} s`, `${(ms / floor).toFixed(2)}x`, `${(ms / nspawn).toFixed(2)}x`, c.name === 'oci-userns shift' ? `${Math.round(rss / 1024)} MiB` : ''];
  });
}

try {
  console.log(`bench:shift: ${runs} interleaved runs per candidate, medians; oci-userns runs as dist/oci-userns.cjs`);
  const generated = join(work, 'generated');
  generate(generated, size);
  addTrue(generated);
  const rows: Array<[string, ...string[]]> = [['tree', 'candidate', 'time', 'vs chown -R', 'vs nspawn', 'peak RSS']];
  rows.push(...bench('generated', generated));
  rmSync(generated, { recursive: true, force: true });
  const tarball = run('bash', [join(repo, 'scripts', 'debian-rootfs.sh')]).trim();
  const debian = join(work, 'debian');
  mkdirSync(debian);
  run('tar', ['--xattrs', "--xattrs-include=*", '--acls', '--numeric-owner', '-xpf', tarball, '-C', debian]);
  addTrue(debian);
  rows.push(...bench('debian', debian));
  printTable(rows);
} finally {
  rmSync(work, { recursive: true, force: true });
}
