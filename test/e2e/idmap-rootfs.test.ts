// End to end: the idmap route for a directory rootfs under runc and crun.
// The built oci-userns hook at createRuntime, with the default shift.method
// auto, gives the container an idmapped `/` in its mount namespace with its
// user namespace (container 0 -> host 300000): a busybox rootfs and the
// Debian systemd rootfs, both owned by host root, under a parent closed to
// other host users (the safety rule), show the image's owners
// inside; systemd boots; inside it nobody pings (file capability), sudo
// gives root (setuid) and ACL named entries keep their ids; the raw tree keeps every original owner, mode, ACL
// and capability; nothing stays mounted in the runtime's namespace. On an
// overlayfs rootfs, auto falls back to chown with the reason logged, and
// shift.method idmap fails the container. Needs root, runc, crun, make, cc,
// tar, getfattr.

import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Spec } from '../../lib/oci/spec';
import { parseMountinfo, visibleMounts } from '../../lib/sys/mountinfo';
import { snapshot } from '../helpers/shift-tree';
import { skippedUnless } from '../helpers/skip';
import {
  buildIdmapHelper,
  buildProgram,
  buildSpec,
  busyboxRootfs,
  debianRootfs,
  debianTarball,
  closeParentToRange,
  programHooks,
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
const NAME = 'idmapped directory rootfs through a createRuntime hook under runc and crun';
const RUNTIMES: RuntimeName[] = ['runc', 'crun'];

const skip = await skipReason({ runtimes: RUNTIMES, commands: ['make', 'cc', 'tar', 'getfattr'] });
const test = skippedUnless(suite(NAME), NAME, skip);
let work: Workspace | undefined;
let session: Session | undefined;

const owner = (path: string) => `${lstatSync(path).uid}:${lstatSync(path).gid}`;

/** The built program at createRuntime and poststop, configured by a config file in `dir` with `overrides`. */
function hooks(dir: string, overrides: Record<string, unknown> = {}): { hooks: Spec['hooks']; logFile: string } {
  const config = writeProgramConfig(dir, overrides);
  return { hooks: programHooks(config.path), logFile: config.logFile };
}

const closeParent = (rootfs: string) => closeParentToRange(rootfs, HOST_ID);

/** The createRuntime line the hook logged for the container (its `shift` field says what it did with the rootfs). */
function createRuntimeLine(logFile: string, id: string): { shift?: Record<string, unknown>; message: string } | undefined {
  if (!existsSync(logFile)) return undefined;
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line))
    .find((line) => line.containerId === id && line.stage === 'createRuntime' && line.outcome !== undefined);
}

/** Lines of the session namespace's mountinfo that mention `path`: runtimes and hooks run there. */
async function sessionMounts(path: string): Promise<string[]> {
  const { stdout } = await session!.run(['cat', '/proc/self/mountinfo']);
  return stdout.split('\n').filter((line) => line.includes(path));
}

/**
 * Privilege inside an idmapped rootfs (issue 12, "Done when"): a non-root
 * user pings (iputils' ping carries the file capability cap_net_raw, a v2
 * capability on disk, so its rootid is container root through the mount),
 * sudo (setuid root on disk) gives a non-root user uid 0, and the named ACL
 * entries of the raw tree read back by their container ids. Leaves
 * /etc/acl-inside with a named entry set inside, for the caller to read on disk.
 */
async function privilegeThroughIdmap(runtime: Runtime, id: string): Promise<void> {
  const exec = (script: string) => runtime.exec(id, ['sh', '-c', script]);
  const caps = await exec('getcap /usr/bin/ping; stat -c "%u:%g %A" /usr/bin/sudo');
  assert.is(caps.stdout, '/usr/bin/ping cap_net_raw=ep\n0:0 -rwsr-xr-x', caps.all);
  const ping = await exec('runuser -u nobody -- ping -c1 -W5 127.0.0.1');
  assert.is(ping.exitCode, 0, `nobody pings through the file capability: ${ping.all}`);
  assert.match(ping.stdout, /1 received/);
  // The control: the same binary without its capability (cp drops xattrs) cannot open the socket.
  const bare = await exec('cp /usr/bin/ping /tmp/ping-bare && runuser -u nobody -- /tmp/ping-bare -c1 -W5 127.0.0.1');
  assert.ok(bare.exitCode !== 0, `without the capability nobody cannot ping: ${bare.all}`);
  const sudo = await exec("printf 'nobody ALL=(ALL) NOPASSWD: ALL\\n' > /etc/sudoers.d/nobody && chmod 0440 /etc/sudoers.d/nobody && runuser -u nobody -- sh -c 'id -u; sudo -n id -u'");
  assert.is(sudo.stdout, '65534\n0', `sudo (setuid root) gives nobody uid 0: ${sudo.all}`);
  const acl = await exec('getfacl -n -c /etc/acl-probe; touch /etc/acl-inside && setfacl -m u:1001:r /etc/acl-inside');
  assert.is(acl.exitCode, 0, acl.all);
  assert.match(acl.stdout, /^user:1000:r-x$/m, `named user entry by its container id: ${acl.stdout}`);
  assert.match(acl.stdout, /^group:42:r--$/m, `named group entry by its container id: ${acl.stdout}`);
}

test.before(async () => {
  await Promise.all([buildProgram(), buildIdmapHelper(), debianTarball()]);
  work = Workspace.create('oci-userns-idmap-rootfs-');
  session = await Session.open();
});
test.after(() => {
  session?.close();
  work?.remove();
});

for (const name of RUNTIMES) {
  test(`${name}, busybox rootfs owned by host root: / and /etc/shadow show 0:0 and 0:42 inside; writes land as host 0; nothing left mounted`, async () => {
    const runtime = new Runtime(session!, name);
    const rootfs = closeParent(busyboxRootfs(work!.path(name, 'busybox', 'rootfs'), ['sh', 'stat', 'grep', 'touch']));
    writeFileSync(join(rootfs, 'etc', 'shadow'), 'root:*:1::::::\n', { mode: 0o640 });
    await session!.run(['chown', '0:42', join(rootfs, 'etc', 'shadow')]);
    const { hooks: h, logFile } = hooks(work!.path(name, 'busybox', 'config'));
    const script = 'stat -c "%u:%g %n" / /etc/shadow && grep " / " /proc/self/mountinfo && touch /made-inside';
    const spec = buildSpec({ runtime: name, rootfs, args: ['/bin/sh', '-c', script], userns: { hostId: HOST_ID, size: SIZE }, hooks: h });
    const bundle = writeBundle(work!.path(name, 'busybox', 'bundle'), spec);
    const id = uniqueId(`idmap-${name}`);
    try {
      const result = await runtime.run(id, bundle);
      assert.is(result.exitCode, 0, result.all);
      assert.match(result.stdout, /^0:0 \/\n0:42 \/etc\/shadow\n/);
      assert.match(result.stdout, / \/ [^ ]*idmapped/, 'inside, / is an idmapped mount');
      const shift = createRuntimeLine(logFile, id)?.shift;
      assert.is(shift?.action, 'idmapped', JSON.stringify(shift));
      console.log(`  ${name}: rootfs step ${shift!.ms} ms, helper system calls ${shift!.syscallUs} µs`);
      assert.is(owner(rootfs), '0:0', 'the raw tree is untouched');
      assert.is(owner(join(rootfs, 'made-inside')), '0:0', 'container root wrote host 0 through the idmapped mount');
    } finally {
      await runtime.cleanup();
    }
    assert.equal(await sessionMounts(rootfs), [], "nothing of the rootfs stays mounted in the runtime's namespace");
  });
}

test('runc, rootfs on an overlayfs mount: auto falls back to chown, saying why; shift.method idmap fails the container', async () => {
  const runtime = new Runtime(session!, 'runc');
  const base = work!.path('overlay');
  for (const d of ['upper', 'work', 'merged']) mkdirSync(join(base, d), { recursive: true, mode: 0o755 });
  busyboxRootfs(join(base, 'lower'), ['sh', 'stat']);
  const merged = closeParent(join(base, 'merged'));
  const mounted = await session!.run(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${base}/lower,upperdir=${base}/upper,workdir=${base}/work`, merged]);
  assert.is(mounted.exitCode, 0, mounted.all);
  const run = async (method: string) => {
    const { hooks: h, logFile } = hooks(join(base, method), { shift: { method } });
    const spec = buildSpec({ runtime: 'runc', rootfs: merged, args: ['/bin/stat', '-c', '%u:%g %n', '/'], userns: { hostId: HOST_ID, size: SIZE }, hooks: h });
    const id = uniqueId(`idmap-overlay-${method}`);
    const result = await runtime.run(id, writeBundle(join(base, method, 'bundle'), spec));
    return { result, line: createRuntimeLine(logFile, id), log: readFileSync(logFile, 'utf8') };
  };
  try {
    const strict = await run('idmap');
    assert.ok(strict.result.exitCode !== 0, `shift.method idmap on overlayfs must fail: ${strict.result.all}`);
    assert.match(strict.result.all, /cannot be idmapped here \(oci-userns-idmap: the kernel refused an idmapped mount \(mount_setattr\): .*: Invalid argument\); set shift.method to auto/);
    assert.is(lstatSync(merged).uid, 0, 'nothing was chowned');
    const auto = await run('auto');
    assert.is(auto.result.exitCode, 0, auto.result.all);
    assert.is(auto.result.stdout.trim(), '0:0 /', 'shifted by chown instead');
    assert.is(auto.line?.shift?.action, 'shifted', JSON.stringify(auto.line));
    assert.match(String(auto.line?.shift?.idmapRefused), /mount_setattr.*Invalid argument/);
    assert.match(auto.log, /the rootfs is not idmapped; shifting it with chown instead/);
  } finally {
    await runtime.cleanup();
    await session!.run(['umount', merged]);
  }
});

for (const name of RUNTIMES) {
  test(`${name}, Debian systemd rootfs owned by host root: boots through the idmap hook; / and /etc/shadow are 0:0 and 0:42; the raw tree is unchanged inode by inode`, async () => {
    const runtime = new Runtime(session!, name);
    const rootfs = closeParent(await debianRootfs(work!.path(name, 'debian', 'rootfs')));
    // A named ACL entry on disk (user 1000, group 42) that must read back inside by its container ids.
    const probe = join(rootfs, 'etc', 'acl-probe');
    writeFileSync(probe, '');
    await session!.run(['setfacl', '-m', 'u:1000:rx,g:42:r', probe]);
    const before = snapshot(rootfs);
    const { hooks: h, logFile } = hooks(work!.path(name, 'debian', 'config'));
    const id = uniqueId(`idmap-boot-${name}`);
    const spec = buildSpec({
      runtime: name,
      cgroupsPath: `/${id}`,
      rootfs,
      args: ['/sbin/init'],
      userns: { hostId: HOST_ID, size: SIZE },
      systemd: true,
      hooks: h,
    });
    // ping's file capability raises CAP_NET_RAW, which must be in the bounding set (capabilities(7): else execve fails with EPERM).
    for (const set of ['bounding', 'effective', 'permitted']) (spec.process!.capabilities as Record<string, string[]>)[set]!.push('CAP_NET_RAW');
    const bundle = writeBundle(work!.path(name, 'debian', 'bundle'), spec);
    try {
      const started = await runtime.run(id, bundle, { detach: true });
      assert.is(started.exitCode, 0, `${name} run -d: ${started.all}`);
      const shift = createRuntimeLine(logFile, id)?.shift;
      assert.is(shift?.action, 'idmapped', JSON.stringify(shift));
      const { state, output } = await waitForSystemd(runtime, id);
      assert.ok(['running', 'degraded'].includes(state), `systemctl is-system-running --wait: ${state}: ${output}`);
      if (state === 'degraded') console.log(`  ${name}: degraded; failed units:\n${(await runtime.exec(id, ['systemctl', '--failed', '--no-pager', '--plain'])).all}`);
      const owners = await runtime.exec(id, ['stat', '-c', '%u:%g %U:%G %n', '/', '/etc/shadow']);
      assert.is(owners.stdout, '0:0 root:root /\n0:42 root:shadow /etc/shadow');
      const mounts = visibleMounts(parseMountinfo((await runtime.exec(id, ['cat', '/proc/self/mountinfo'])).stdout));
      assert.ok(mounts.find((m) => m.mountPoint === '/')?.mountOptions.includes('idmapped'), 'inside, / is an idmapped mount');
      console.log(`  ${name}: rootfs step ${shift!.ms} ms, helper system calls ${shift!.syscallUs} µs`);
      await privilegeThroughIdmap(runtime, id);
    } finally {
      await runtime.cleanup();
    }
    const acl = await session!.run(['getfacl', '-n', '-c', join(rootfs, 'etc', 'acl-inside')]);
    assert.match(acl.stdout, /^user:1001:r--$/m, `a named entry set inside lands on disk by its container id: ${acl.all}`);
    const after = snapshot(rootfs);
    const changed = [...before].filter(([path, inode]) => after.has(path) && JSON.stringify(after.get(path)) !== JSON.stringify(inode)).map(([path]) => path);
    assert.equal(changed, [], 'every inode of the raw tree keeps its owner, mode, ACLs and capabilities');
    assert.equal(await sessionMounts(rootfs), [], "nothing of the rootfs stays mounted in the runtime's namespace");
  });
}

test.run();
