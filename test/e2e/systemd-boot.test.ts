// End to end: the Debian bookworm systemd rootfs boots as PID 1 in a user
// namespace (container 0 -> host 300000, 65536 ids, cgroup namespace,
// /sys/fs/cgroup rw) under runc and under crun, with the built oci-userns
// hook at createRuntime: it shifts the rootfs and delegates the cgroup.
// A control run under runc without the hook, on a rootfs shifted
// beforehand, fails the way the issue describes: the hook is what makes
// systemd boot. Needs root, runc, crun, script, and the cached rootfs
// (scripts/debian-rootfs.sh builds it on first use with debootstrap).
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { resolveCgroupDir, unifiedCgroupPath } from '../../lib/cgroup/delegate';
import { cgroup2Mount } from '../../lib/sys/mountinfo';
import { shiftTree } from '../../lib/shift/shift';
import { skippedUnless } from '../helpers/skip';
import {
  buildProgram,
  buildSpec,
  debianRootfs,
  debianTarball,
  programHook,
  Runtime,
  Session,
  skipReason,
  uniqueId,
  waitForSystemd,
  Workspace,
  writeBundle,
  writeProgramConfig,
  type RuntimeName,
} from './harness';

const HOST_ID = 300000;
const SIZE = 65536;
const NAME = 'systemd boot in a user namespace under runc and crun';

const skip = await skipReason({ runtimes: ['runc', 'crun'], commands: ['script', 'tar'] });
const test = skippedUnless(suite(NAME), NAME, skip);
let work: Workspace | undefined;
let session: Session | undefined;

/** A cgroup (as /proc/<pid>/cgroup names it) where this process sees the cgroup2 hierarchy. */
function hostCgroupDir(cgroup: string): string {
  return resolveCgroupDir(cgroup2Mount(readFileSync('/proc/self/mountinfo', 'utf8'))!, cgroup);
}

const owner = (path: string) => {
  const stat = lstatSync(path);
  return `${stat.uid}:${stat.gid}`;
};

test.before(async () => {
  await Promise.all([buildProgram(), debianTarball()]);
  work = Workspace.create('oci-userns-systemd-boot-');
  session = await Session.open();
});
test.after(() => {
  session?.close();
  work?.remove();
});

for (const name of ['runc', 'crun'] as RuntimeName[]) {
  test(`${name} + the oci-userns hook at createRuntime, shift.method chown: systemd reaches running or degraded, init.scope in the container's cgroup`, async () => {
    const runtime = new Runtime(session!, name);
    const rootfs = await debianRootfs(work!.path(name, 'rootfs'));
    // The chown route, forced: the fallback where idmap is refused (idmap-rootfs.test.ts boots the default, idmapped).
    const config = writeProgramConfig(work!.path(name, 'config'), { shift: { method: 'chown' } });
    const id = uniqueId(`boot-${name}`);
    // Explicit, so the test knows the container's cgroup without asking the hook.
    const cgroup = `/${id}`;
    const spec = buildSpec({
      runtime: name,
      cgroupsPath: cgroup,
      rootfs,
      args: ['/sbin/init'],
      userns: { hostId: HOST_ID, size: SIZE },
      systemd: true,
      hooks: { createRuntime: [programHook('createRuntime', config.path)], poststop: [programHook('poststop', config.path)] },
    });
    const bundle = writeBundle(work!.path(name, 'bundle'), spec);
    const log = () => (existsSync(config.logFile) ? readFileSync(config.logFile, 'utf8') : '(no hook log)');
    try {
      const started = await runtime.run(id, bundle, { detach: true });
      assert.is(started.exitCode, 0, `${name} run -d failed: ${started.all}\nhook log:\n${log()}`);
      assert.is(owner(rootfs), `${HOST_ID}:${HOST_ID}`, 'the hook shifted the rootfs');

      const { state, output } = await waitForSystemd(runtime, id);
      const failed = state === 'degraded' ? (await runtime.exec(id, ['systemctl', '--failed', '--no-pager', '--plain'])).all : '';
      assert.ok(['running', 'degraded'].includes(state), `systemctl is-system-running --wait: ${state}: ${output}`);
      if (failed) console.log(`  ${name}: degraded; failed units:\n${failed}`);

      const pid = (await runtime.state(id))!.pid;
      assert.is(unifiedCgroupPath(readFileSync(`/proc/${pid}/cgroup`, 'utf8')), `${cgroup}/init.scope`, 'systemd moved itself into init.scope');
      const dir = hostCgroupDir(cgroup);
      assert.ok(existsSync(join(dir, 'init.scope')), `${dir}/init.scope exists`);
      assert.is(owner(dir), `${HOST_ID}:${HOST_ID}`, 'the container cgroup belongs to container root');
      for (const file of ['cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control']) assert.is(owner(join(dir, file)), `${HOST_ID}:${HOST_ID}`, file);
      const done = log()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line))
        .find((entry) => entry.message === 'createRuntime done');
      assert.ok(done, `the hook logged its createRuntime work:\n${log()}`);
      assert.is(done.cgroup?.path, `/sys/fs/cgroup${cgroup}`, 'the hook resolved the cgroup against the cgroup2 mount it sees');
      // runc leaves the cgroup to host root; crun 1.8 delegates it before the hook runs.
      if (name === 'runc') assert.ok(done.cgroup.changed > 0, 'under runc the hook delegated the cgroup');
      else assert.is(done.cgroup.changed, 0, 'under crun the hook found the cgroup delegated and changed nothing');
    } finally {
      await runtime.cleanup();
    }
  });
}

test('control: runc without the hook, rootfs shifted beforehand: systemd cannot create init.scope', async () => {
  const runtime = new Runtime(session!, 'runc');
  const rootfs = await debianRootfs(work!.path('control', 'rootfs'));
  const map = [{ containerID: 0, hostID: HOST_ID, size: SIZE }];
  await shiftTree({ rootfs, uidMap: map, gidMap: map, unmapped: 'error', stateDir: work!.path('control', 'shift-state') });
  const spec = buildSpec({ runtime: 'runc', rootfs, args: ['/sbin/init'], userns: { hostId: HOST_ID, size: SIZE }, systemd: true, terminal: true });
  const bundle = writeBundle(work!.path('control', 'bundle'), spec);
  const id = uniqueId('boot-control');
  try {
    const result = await runtime.runWithConsole(id, bundle, work!.path('control', 'console.log'), 60_000);
    assert.not.ok(result.timedOut, `systemd kept running without the hook:\n${result.console}`);
    assert.ok(result.exitCode !== 0, `runc run exited ${result.exitCode}`);
    assert.match(result.console, 'Failed to create /init.scope control group: Permission denied');
  } finally {
    await runtime.cleanup();
  }
});

test.run();
