// The C helper (native/idmap-mount.c) on its own, as root: idmaps a tree on
// ext4 and on tmpfs inside another process's mount namespace with that
// process's user namespace (container 0 -> host 300000), so the process sees
// the image's owners and what it writes lands as host 0 on the raw tree;
// refuses an overlayfs mount with the "not supported" status (4) and changes
// nothing; rejects bad arguments with 2 and a missing namespace file with 6;
// leaves nothing mounted in the host
// namespace.

import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { probeOverlayIdmap } from '../../lib/rootfs/overlay-probe';
import { skippedUnless } from '../helpers/skip';
import { buildIdmapHelper, IDMAP_HELPER, skipReason, Workspace } from './harness';

const HOST_ID = 300000;
const NAME = 'oci-userns-idmap helper';
const skip = await skipReason({ commands: ['unshare', 'nsenter', 'make', 'cc'] });
const test = skippedUnless(suite(NAME), NAME, skip);

/** A process in a new user and mount namespace mapping 0 -> HOST_ID (65536 ids), written by us as host root. */
async function holder(): Promise<{ pid: number; child: ChildProcess }> {
  const child = spawn('unshare', ['--user', '--mount', '--propagation', 'private', 'sleep', '600'], { stdio: 'ignore' });
  const pid = child.pid!;
  const own = readlinkSync('/proc/self/ns/user');
  for (let i = 0; i < 200 && readlinkSync(`/proc/${pid}/ns/user`) === own; i++) await new Promise((r) => setTimeout(r, 5));
  for (const map of ['uid_map', 'gid_map']) writeFileSync(`/proc/${pid}/${map}`, `0 ${HOST_ID} 65536\n`);
  return { pid, child };
}

const helper = (args: string[]) => execa(IDMAP_HELPER, args, { reject: false });
const inside = (pid: number, script: string) => execa('nsenter', ['-t', String(pid), '-U', '-m', '--', 'sh', '-c', script], { reject: false, all: true });
const mountLines = (mountinfo: string, under: string) => mountinfo.split('\n').filter((line) => line.includes(under));
const owner = (path: string) => `${statSync(path).uid}:${statSync(path).gid}`;

/** A tree owned by host root: a 0:42 file and a 1000:1000 directory. */
function tree(dir: string): string {
  mkdirSync(join(dir, 'sub'), { recursive: true, mode: 0o755 });
  writeFileSync(join(dir, 'shadow'), 'x\n', { mode: 0o640 });
  chownSync(join(dir, 'shadow'), 0, 42);
  chownSync(join(dir, 'sub'), 1000, 1000);
  return dir;
}

let work: Workspace | undefined;
const mounted: string[] = [];
const holders: ChildProcess[] = [];

test.before(async () => {
  await buildIdmapHelper();
  work = Workspace.create('oci-userns-idmap-helper-');
});
test.after(async () => {
  for (const child of holders) child.kill('SIGKILL');
  for (const dir of mounted.reverse()) await execa('umount', ['-l', dir], { reject: false });
  work?.remove();
});

for (const backing of ['ext4 (the temp dir)', 'tmpfs']) {
  test(`${backing}: the process sees the image's owners through the idmapped clone; what it writes is host 0 on the raw tree`, async () => {
    const base = work!.path(backing === 'tmpfs' ? 'tmpfs' : 'ext4');
    mkdirSync(base, { mode: 0o755 });
    if (backing === 'tmpfs') {
      await execa('mount', ['-t', 'tmpfs', '-o', 'mode=755', 'tmpfs', base]);
      mounted.push(base);
    }
    const root = tree(join(base, 'rootfs'));
    const hostBefore = mountLines(readFileSync('/proc/self/mountinfo', 'utf8'), root);
    const { pid, child } = await holder();
    holders.push(child);
    const before = await inside(pid, `stat -c %u:%g ${root} ${root}/shadow ${root}/sub`);
    assert.is(before.stdout, '65534:65534\n65534:65534\n65534:65534', 'without the idmap, host 0 and 1000 are unmapped inside');

    const result = await helper(['mount', '--mntns', `/proc/${pid}/ns/mnt`, '--userns', `/proc/${pid}/ns/user`, root]);
    assert.is(result.exitCode, 0, result.stderr);
    assert.match(result.stdout, /^ok setns_us=\d+ open_tree_us=\d+ mount_setattr_us=\d+ move_mount_us=\d+$/);
    const seen = await inside(pid, `stat -c %u:%g ${root} ${root}/shadow ${root}/sub && touch ${root}/made-inside && mkdir ${root}/sub/dir-inside`);
    assert.is(seen.exitCode, 0, seen.all);
    assert.is(seen.stdout, '0:0\n0:42\n1000:1000');
    assert.is(owner(join(root, 'made-inside')), '0:0', 'container root writes host 0 through the idmapped mount');
    assert.is(owner(join(root, 'sub', 'dir-inside')), '0:0');
    assert.is(owner(join(root, 'shadow')), '0:42', 'the raw tree keeps its owners');
    const theirs = mountLines(readFileSync(`/proc/${pid}/mountinfo`, 'utf8'), root);
    assert.ok(theirs.some((line) => / idmapped[ ,]/.test(line) || /,idmapped/.test(line)), `an idmapped mount in the process's namespace:\n${theirs.join('\n')}`);
    assert.equal(mountLines(readFileSync('/proc/self/mountinfo', 'utf8'), root), hostBefore, 'nothing new is mounted in the host namespace');
  });
}

test('an overlayfs mount: probe and mount exit 4 (not supported: fall back) and change nothing', async () => {
  const base = work!.path('overlay');
  for (const d of ['lower', 'upper', 'work', 'merged']) mkdirSync(join(base, d), { recursive: true, mode: 0o755 });
  tree(join(base, 'lower'));
  const merged = join(base, 'merged');
  await execa('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${base}/lower,upperdir=${base}/upper,workdir=${base}/work`, merged]);
  mounted.push(merged);
  const { pid, child } = await holder();
  holders.push(child);
  const theirsBefore = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');

  const probe = await helper(['probe', merged]);
  assert.is(probe.exitCode, 4, probe.stderr);
  assert.is(probe.stderr, `oci-userns-idmap: the kernel refused an idmapped mount (mount_setattr): ${merged}: Invalid argument`);
  const result = await helper(['mount', '--mntns', `/proc/${pid}/ns/mnt`, '--userns', `/proc/${pid}/ns/user`, merged]);
  assert.is(result.exitCode, 4, result.stderr);
  assert.is(readFileSync(`/proc/${pid}/mountinfo`, 'utf8'), theirsBefore, "the process's mounts are unchanged");
  const ok = await helper(['probe', join(base, 'lower')]);
  assert.is(ok.exitCode, 0, `the ext4 lower directory takes an idmap: ${ok.stderr}`);
});

test("doctor's overlay probe: an overlay over an idmapped clone mounts here; nothing is left mounted or on disk; a missing helper says so", async () => {
  const dir = work!.path('overlay-probe');
  mkdirSync(dir, { recursive: true });
  const before = readFileSync('/proc/self/mountinfo', 'utf8');
  assert.equal(await probeOverlayIdmap({ dir, helper: IDMAP_HELPER }), { supported: true });
  assert.is(readFileSync('/proc/self/mountinfo', 'utf8'), before, 'the try was in its own mount namespace');
  assert.equal(readdirSync(dir), []);
  const missing = await probeOverlayIdmap({ dir, helper: join(dir, 'missing-helper') });
  assert.is(missing.supported, false);
  assert.equal(readdirSync(dir), []);
});

test('bad arguments exit 2 with one line and change nothing', async () => {
  const root = tree(work!.path('bad', 'rootfs'));
  const cases: Array<[string[], RegExp]> = [
    [[], /^usage: /],
    [['mount', root], /^usage: /],
    [['mount', '--userns', '/proc/self/ns/mnt', root], /^oci-userns-idmap: not a user namespace: \/proc\/self\/ns\/mnt$/],
    [['mount', '--userns', '/proc/self/ns/user', root], /is the helper's own/],
    [['probe', 'relative/path'], /the path must be absolute: relative\/path$/],
  ];
  for (const [args, message] of cases) {
    const result = await helper(args);
    assert.is(result.exitCode, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr.split('\n')[0]!, message, args.join(' '));
  }
  const gone = await helper(['mount', '--userns', join(root, 'missing'), root]);
  assert.is(gone.exitCode, 6, 'a namespace file that is gone (its process exited) is a failed system call');
  assert.match(gone.stderr, /^oci-userns-idmap: cannot open namespace file: .*\/missing: No such file or directory$/);
  assert.equal(mountLines(readFileSync('/proc/self/mountinfo', 'utf8'), root), []);
});

test.run();
