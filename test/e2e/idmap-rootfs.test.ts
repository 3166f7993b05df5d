// End to end: the idmap route for a directory rootfs under runc and crun.
// A createRuntime hook (test/helpers/idmap-hook.ts, which calls
// idmapRootfs) gives the container an idmapped `/` in its mount namespace,
// with its user namespace (container 0 -> host 300000): a busybox rootfs and
// the Debian systemd rootfs, both owned by host root, show the image's
// owners inside; systemd boots; the raw tree keeps every original owner,
// mode, ACL and capability; nothing stays mounted in the runtime's
// namespace. On an overlayfs rootfs the hook reports 'unsupported' and
// changes nothing. Needs root, runc, crun, make, cc, tar, getfattr, script.

import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { SpecHook } from '../../lib/oci/spec';
import { parseMountinfo, visibleMounts } from '../../lib/sys/mountinfo';
import { snapshot } from '../helpers/shift-tree';
import {
  buildIdmapHelper,
  buildSpec,
  busyboxRootfs,
  cgroupChownHook,
  debianRootfs,
  debianTarball,
  IDMAP_HELPER,
  REPO,
  Runtime,
  Session,
  skipLoudly,
  skipReason,
  uniqueId,
  waitForSystemd,
  Workspace,
  writeBundle,
  type RuntimeName,
} from './harness';

const HOST_ID = 300000;
const SIZE = 65536;
const NAME = 'idmapped directory rootfs through a createRuntime hook under runc and crun';
const RUNTIMES: RuntimeName[] = ['runc', 'crun'];

const skip = await skipReason({ runtimes: RUNTIMES, commands: ['make', 'cc', 'tar', 'getfattr'] });
const test = suite(NAME);
let work: Workspace | undefined;
let session: Session | undefined;

const owner = (path: string) => `${lstatSync(path).uid}:${lstatSync(path).gid}`;

/** The test hook, run by node through tsx (resolved here: the runtime starts hooks in the bundle directory). */
function idmapHook(resultFile: string): SpecHook {
  const hook = join(REPO, 'test', 'helpers', 'idmap-hook.ts');
  return {
    path: process.execPath,
    args: ['node', '--import', import.meta.resolve('tsx'), hook],
    env: [`IDMAP_HOOK_RESULT=${resultFile}`, `IDMAP_HELPER=${IDMAP_HELPER}`, 'PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
  };
}

const readResult = (file: string) => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined);

/** Lines of the session namespace's mountinfo that mention `path`: runtimes and hooks run there. */
async function sessionMounts(path: string): Promise<string[]> {
  const { stdout } = await session!.run(['cat', '/proc/self/mountinfo']);
  return stdout.split('\n').filter((line) => line.includes(path));
}

if (skip) {
  skipLoudly(NAME, skip);
  test.skip(`${NAME} (skipped: ${skip})`, () => {});
} else {
  test.before(async () => {
    await Promise.all([buildIdmapHelper(), debianTarball()]);
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
      const rootfs = busyboxRootfs(work!.path(name, 'busybox', 'rootfs'), ['sh', 'stat', 'grep', 'touch']);
      writeFileSync(join(rootfs, 'etc', 'shadow'), 'root:*:1::::::\n', { mode: 0o640 });
      await session!.run(['chown', '0:42', join(rootfs, 'etc', 'shadow')]);
      const resultFile = work!.path(name, 'busybox', 'hook-result.json');
      const script = 'stat -c "%u:%g %n" / /etc/shadow && grep " / " /proc/self/mountinfo && touch /made-inside';
      const spec = buildSpec({ runtime: name, rootfs, args: ['/bin/sh', '-c', script], userns: { hostId: HOST_ID, size: SIZE }, hooks: { createRuntime: [idmapHook(resultFile)] } });
      const bundle = writeBundle(work!.path(name, 'busybox', 'bundle'), spec);
      try {
        const result = await runtime.run(uniqueId(`idmap-${name}`), bundle);
        assert.is(result.exitCode, 0, result.all);
        assert.match(result.stdout, /^0:0 \/\n0:42 \/etc\/shadow\n/);
        assert.match(result.stdout, / \/ [^ ]*idmapped/, 'inside, / is an idmapped mount');
        const hook = readResult(resultFile);
        assert.is(hook?.action, 'idmapped', JSON.stringify(hook));
        console.log(`  ${name}: idmapRootfs ${hook.ms} ms, helper syscalls ${JSON.stringify(hook.timings)}`);
        assert.is(owner(rootfs), '0:0', 'the raw tree is untouched');
        assert.is(owner(join(rootfs, 'made-inside')), '0:0', 'container root wrote host 0 through the idmapped mount');
      } finally {
        await runtime.cleanup();
      }
      assert.equal(await sessionMounts(rootfs), [], "nothing of the rootfs stays mounted in the runtime's namespace");
    });
  }

  test('runc, rootfs on an overlayfs mount: the hook reports unsupported, changes nothing, the container still starts', async () => {
    const runtime = new Runtime(session!, 'runc');
    const base = work!.path('overlay');
    for (const d of ['upper', 'work', 'merged']) mkdirSync(join(base, d), { recursive: true, mode: 0o755 });
    busyboxRootfs(join(base, 'lower'), ['sh', 'stat']);
    const merged = join(base, 'merged');
    const mounted = await session!.run(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${base}/lower,upperdir=${base}/upper,workdir=${base}/work`, merged]);
    assert.is(mounted.exitCode, 0, mounted.all);
    const resultFile = join(base, 'hook-result.json');
    const spec = buildSpec({ runtime: 'runc', rootfs: merged, args: ['/bin/stat', '-c', '%u:%g %n', '/'], userns: { hostId: HOST_ID, size: SIZE }, hooks: { createRuntime: [idmapHook(resultFile)] } });
    const bundle = writeBundle(join(base, 'bundle'), spec);
    try {
      const before = await sessionMounts(merged);
      const result = await runtime.run(uniqueId('idmap-overlay'), bundle);
      assert.is(result.exitCode, 0, result.all);
      assert.is(result.stdout.trim(), '65534:65534 /', 'not idmapped: host root is unmapped inside');
      const hook = readResult(resultFile);
      assert.is(hook?.action, 'unsupported', JSON.stringify(hook));
      assert.match(hook.reason, /mount_setattr.*Invalid argument/);
      await runtime.cleanup();
      assert.equal(await sessionMounts(merged), before);
    } finally {
      await runtime.cleanup();
      await session!.run(['umount', merged]);
    }
  });

  for (const name of RUNTIMES) {
    test(`${name}, Debian systemd rootfs owned by host root: boots through the idmap hook; / and /etc/shadow are 0:0 and 0:42; the raw tree is unchanged inode by inode`, async () => {
      const runtime = new Runtime(session!, name);
      const rootfs = await debianRootfs(work!.path(name, 'debian', 'rootfs'));
      const before = snapshot(rootfs);
      const resultFile = work!.path(name, 'debian', 'hook-result.json');
      const id = uniqueId(`idmap-boot-${name}`);
      const spec = buildSpec({
        runtime: name,
        cgroupsPath: `/${id}`,
        rootfs,
        args: ['/sbin/init'],
        userns: { hostId: HOST_ID, size: SIZE },
        systemd: true,
        hooks: { createRuntime: [idmapHook(resultFile), cgroupChownHook(work!.path(name, 'debian', 'hooks'), HOST_ID, HOST_ID)] },
      });
      const bundle = writeBundle(work!.path(name, 'debian', 'bundle'), spec);
      try {
        const started = await runtime.run(id, bundle, { detach: true });
        assert.is(started.exitCode, 0, `${name} run -d: ${started.all}`);
        const hook = readResult(resultFile);
        assert.is(hook?.action, 'idmapped', JSON.stringify(hook));
        const { state, output } = await waitForSystemd(runtime, id);
        assert.ok(['running', 'degraded'].includes(state), `systemctl is-system-running --wait: ${state}: ${output}`);
        if (state === 'degraded') console.log(`  ${name}: degraded; failed units:\n${(await runtime.exec(id, ['systemctl', '--failed', '--no-pager', '--plain'])).all}`);
        const owners = await runtime.exec(id, ['stat', '-c', '%u:%g %U:%G %n', '/', '/etc/shadow']);
        assert.is(owners.stdout, '0:0 root:root /\n0:42 root:shadow /etc/shadow');
        const mounts = visibleMounts(parseMountinfo((await runtime.exec(id, ['cat', '/proc/self/mountinfo'])).stdout));
        assert.ok(mounts.find((m) => m.mountPoint === '/')?.mountOptions.includes('idmapped'), 'inside, / is an idmapped mount');
        console.log(`  ${name}: idmapRootfs ${hook.ms} ms, helper syscalls ${JSON.stringify(hook.timings)}`);
      } finally {
        await runtime.cleanup();
      }
      const after = snapshot(rootfs);
      const changed = [...before].filter(([path, inode]) => after.has(path) && JSON.stringify(after.get(path)) !== JSON.stringify(inode)).map(([path]) => path);
      assert.equal(changed, [], 'every inode of the raw tree keeps its owner, mode, ACLs and capabilities');
      assert.equal(await sessionMounts(rootfs), [], "nothing of the rootfs stays mounted in the runtime's namespace");
    });
  }
}

test.run();
