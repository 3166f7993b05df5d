import { chownSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite, type Test } from 'uvu';
import * as assert from 'uvu/assert';
import { delegateCgroup, resolveCgroupDir, unifiedCgroupPath, type DelegateOptions } from '../../lib/cgroup/delegate';
import { systemdSpecProblems } from '../../lib/cgroup/spec-check';
import { HostError, RefusedError } from '../../lib/errors';
import { rejects } from '../helpers/assert-error';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

// A fake host: a cgroup2 tree in a temp dir, a mountinfo naming it, a /proc
// with the container's cgroup file, and the kernel's delegate list.
let root = '';
let cgroupfs = '';
const PID = 4242;
const UID = 300000;
const GID = 300001;

function host(cgroupLine: string, mountRoot = '/', mountDir = 'cgroup') {
  cgroupfs = join(root, mountDir);
  mkdirSync(cgroupfs, { recursive: true });
  mkdirSync(join(root, 'proc', String(PID)), { recursive: true });
  writeFileSync(join(root, 'proc', String(PID), 'cgroup'), cgroupLine);
  const escape = (path: string) => path.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  writeFileSync(
    join(root, 'mountinfo'),
    [`31 23 0:28 / ${escape(root)}/v1 rw - tmpfs tmpfs rw`, `41 31 0:38 ${escape(mountRoot)} ${escape(cgroupfs)} rw,nosuid - cgroup2 cgroup2 rw`, ''].join('\n'),
  );
  writeFileSync(join(root, 'delegate'), 'cgroup.procs\ncgroup.threads\ncgroup.subtree_control\nmemory.oom.group\nmemory.reclaim\n');
}

function cgroupDir(rel: string, files = ['cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control', 'cpu.max', 'memory.max']) {
  const dir = join(cgroupfs, rel);
  mkdirSync(dir, { recursive: true });
  for (const f of files) writeFileSync(join(dir, f), '');
  return dir;
}

const options = (over: Partial<DelegateOptions> = {}): DelegateOptions => ({
  pid: PID,
  uid: UID,
  gid: GID,
  containerId: 'c1',
  procRoot: join(root, 'proc'),
  mountinfoPath: join(root, 'mountinfo'),
  delegateFile: join(root, 'delegate'),
  ...over,
});
const owner = (path: string) => {
  const s = lstatSync(path);
  return `${s.uid}:${s.gid}`;
};

// The fake tree's owner, which a refused delegation leaves as it was.
const untouched = `${process.getuid?.()}:${process.getgid?.()}`;
function onFakeHost<T>(test: Test<T>): Test<T> {
  test.before.each(() => {
    root = mkdtempSync(join(tmpdir(), 'oci-userns-cgroup-'));
  });
  test.after.each(() => rmSync(root, { recursive: true, force: true }));
  return test;
}

// Giving files to container root's host ids takes root (CAP_CHOWN).
const test = onFakeHost(skippedUnless(suite('delegateCgroup on a fake cgroupfs'), 'cgroup unit (delegation)', rootSkipReason()));

test('cgroupfs-driver path: the directory and the delegatable files, never controller files or the parent', async () => {
  host('12:pids:/ignored\n0::/libpod_parent/libpod-abc\n');
  const dir = cgroupDir('libpod_parent/libpod-abc');
  const result = await delegateCgroup(options());
  assert.is(result.cgroupPath, dir);
  assert.is(result.alreadyDelegated, false);
  assert.equal(result.changed.sort(), [dir, ...['cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads'].map((f) => join(dir, f))].sort());
  for (const f of ['', 'cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control']) assert.is(owner(join(dir, f)), `${UID}:${GID}`);
  assert.is(owner(join(dir, 'cpu.max')), '0:0');
  assert.is(owner(join(dir, 'memory.max')), '0:0');
  assert.is(owner(join(cgroupfs, 'libpod_parent')), '0:0');
});
test('idempotent: a second run (or a runtime that delegated already, like crun) changes nothing', async () => {
  host('0::/machine.slice/libpod-abc.scope\n');
  cgroupDir('machine.slice/libpod-abc.scope');
  await delegateCgroup(options());
  const again = await delegateCgroup(options());
  assert.is(again.alreadyDelegated, true);
  assert.equal(again.changed, []);
});
test('a runtime that delegated already (crun): nothing to change', async () => {
  host('0::/abc\n');
  const dir = cgroupDir('abc');
  for (const f of ['', 'cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control', 'memory.oom.group']) {
    if (f) writeFileSync(join(dir, f), '');
    chownSync(join(dir, f), UID, GID);
  }
  const result = await delegateCgroup(options());
  assert.equal(result, { cgroupPath: dir, changed: [], alreadyDelegated: true });
});
test('a cgroup2 mount point with a space (\\040 in mountinfo)', async () => {
  host('0::/libpod_parent/libpod-abc\n', '/', 'cgroup fs');
  const dir = cgroupDir('libpod_parent/libpod-abc');
  assert.is((await delegateCgroup(options())).cgroupPath, dir);
  assert.is(owner(dir), `${UID}:${GID}`);
});
test('systemd-driver paths, and a mount whose root is a subtree (cgroup namespace)', async () => {
  host('0::/kubepods.slice/kubepods-burstable.slice/crio-abc.scope\n', '/kubepods.slice');
  const dir = cgroupDir('kubepods-burstable.slice/crio-abc.scope');
  assert.is((await delegateCgroup(options())).cgroupPath, dir);
});
test('the files come from the kernel list, else the documented minimum', async () => {
  host('0::/c1\n');
  const dir = cgroupDir('c1', ['cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control', 'memory.oom.group']);
  await delegateCgroup(options());
  assert.is(owner(join(dir, 'memory.oom.group')), `${UID}:${GID}`);
  host('0::/c2\n');
  const dir2 = cgroupDir('c2', ['cgroup.procs', 'memory.oom.group']);
  await delegateCgroup(options({ delegateFile: join(root, 'absent') }));
  assert.is(owner(join(dir2, 'cgroup.procs')), `${UID}:${GID}`);
  assert.is(owner(join(dir2, 'memory.oom.group')), '0:0');
});
test.run();

const refuses = onFakeHost(suite('delegateCgroup refusals on a fake cgroupfs'));
refuses('refuses a listed file that is a symlink before changing anything, and leaves its target alone', async () => {
  host('0::/c2\n');
  const dir = cgroupDir('c2', ['cgroup.procs', 'cgroup.subtree_control']);
  writeFileSync(join(root, 'secret'), '');
  symlinkSync(join(root, 'secret'), join(dir, 'cgroup.threads'));
  const before = [dir, join(dir, 'cgroup.procs'), join(root, 'secret')].map(owner);
  await rejects(delegateCgroup(options()), RefusedError, /cgroup.threads is a symlink/);
  assert.equal([dir, join(dir, 'cgroup.procs'), join(root, 'secret')].map(owner), before);
});
refuses('refuses container root mapped to host root', async () => {
  host('0::/c1\n');
  cgroupDir('c1');
  await rejects(delegateCgroup(options({ uid: 0 })), RefusedError, /container root maps to host uid 0/);
  await rejects(delegateCgroup(options({ gid: 0 })), RefusedError, /host gid 0/);
  assert.is(owner(join(cgroupfs, 'c1')), untouched);
});
refuses('refuses the root cgroup, a path outside the mount, a symlink', async () => {
  host('0::/\n');
  await rejects(delegateCgroup(options()), RefusedError, /is the root cgroup/);
  host('0::/elsewhere/c1\n', '/kubepods.slice');
  await rejects(delegateCgroup(options()), RefusedError, /outside the cgroup2 mount/);
  host('0::/link/c1\n');
  mkdirSync(join(root, 'target', 'c1'), { recursive: true });
  symlinkSync(join(root, 'target'), join(cgroupfs, 'link'));
  await rejects(delegateCgroup(options()), RefusedError, /resolves through a symlink/);
  assert.is(owner(join(root, 'target', 'c1')), untouched);
});
refuses('refuses a cgroup directory that is a symlink, and leaves its target alone', async () => {
  host('0::/c1\n');
  mkdirSync(join(root, 'target'));
  symlinkSync(join(root, 'target'), join(cgroupfs, 'c1'));
  await rejects(delegateCgroup(options()), RefusedError, /cgroup .*\/c1 is a symlink/);
  assert.is(owner(join(root, 'target')), untouched);
});
refuses('a vanished pid, a cgroup v1 process, no cgroup2 at all', async () => {
  host('0::/c1\n');
  await rejects(delegateCgroup(options({ pid: 99999 })), HostError, /^container process 99999 exited while the hook was setting it up/);
  host('12:pids:/c1\n1:name=systemd:/c1\n');
  await rejects(delegateCgroup(options()), HostError, /in no cgroup v2 hierarchy/);
  writeFileSync(join(root, 'mountinfo'), `31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n`);
  await rejects(delegateCgroup(options()), HostError, /no cgroup2 hierarchy is mounted \(cgroup v1 only\).*systemd.unified_cgroup_hierarchy=1/);
});
refuses.run();

const pure = suite('cgroup path logic');
pure('unifiedCgroupPath reads the 0:: line', () => {
  assert.is(unifiedCgroupPath('3:cpu:/a\n0::/machine.slice/x.scope\n'), '/machine.slice/x.scope');
  assert.is(unifiedCgroupPath('3:cpu:/a\n'), undefined);
});
pure('resolveCgroupDir refuses escapes', () => {
  const mount = { root: '/', mountPoint: '/sys/fs/cgroup' };
  assert.is(resolveCgroupDir(mount, '/a/b'), '/sys/fs/cgroup/a/b');
  assert.throws(() => resolveCgroupDir(mount, '/a/../../etc'), /not a plain absolute path/);
  assert.throws(() => resolveCgroupDir(mount, 'relative'), /not a plain absolute path/);
});
pure('systemdSpecProblems follows the spec rules', () => {
  const base = {
    linux: { namespaces: [{ type: 'user' }, { type: 'cgroup' }] },
    mounts: [{ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'rw'] }],
  };
  assert.equal(systemdSpecProblems(base), []);
  assert.equal(systemdSpecProblems({ ...base, linux: { namespaces: [{ type: 'user' }] } }), ['the container has no cgroup namespace']);
  assert.equal(systemdSpecProblems({ ...base, mounts: [{ destination: '/sys/fs/cgroup', options: ['ro'] }] }), ['/sys/fs/cgroup is mounted read-only']);
  assert.equal(systemdSpecProblems({ ...base, mounts: [] }), ['nothing is mounted at /sys/fs/cgroup']);
  assert.equal(systemdSpecProblems({}), ['the container has no cgroup namespace', 'nothing is mounted at /sys/fs/cgroup']);
  // The last mount at a destination wins, as the runtime mounts them in order.
  assert.equal(systemdSpecProblems({ ...base, mounts: [...base.mounts, { destination: '/sys/fs/cgroup/', options: ['ro'] }] }), ['/sys/fs/cgroup is mounted read-only']);
});
pure.run();
