// End to end: the runtime shim gives its containers an ID-mapped rootfs,
// under runc and crun, booting the Debian systemd rootfs owned by host root.
//   - A directory rootfs whose raw tree only root can reach (a 0700 root
//     directory above the bundle, as podman's and containerd's state dirs):
//     the shim attaches an idmapped clone at STATEDIR/rootfs/ID/root (parent
//     0700, the range's root) and points root.path there; nothing is chowned;
//     delete unmounts it.
//   - An overlay rootfs built the way containerd's snapshotter builds it
//     (lower layer directories, an empty upper, a work dir, mounted at
//     BUNDLE/rootfs before the runtime): the shim rebuilds it over idmapped
//     lower layers with the upper owned by the range; the upper holds only
//     what the container wrote, the lower layers keep every owner, mode, ACL
//     and capability, and once the engine unmounts BUNDLE/rootfs nothing is
//     left mounted. Also when the engine made the user namespace (its
//     mappings in the spec: containerd 1.7 with hostUsers: false) and handed
//     over a snapshot owned by host root.
// Needs root, runc, crun, make, cc, tar, getfattr, cgroup2.

import { chmodSync, lstatSync, readdirSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseMountinfo, visibleMounts } from '../../lib/sys/mountinfo';
import { snapshot } from '../helpers/shift-tree';
import { skippedUnless } from '../helpers/skip';
import { buildIdmapHelper, buildProgram, buildSpec, debianRootfs, debianTarball, Runtime, Session, skipReason, uniqueId, waitForSystemd, Workspace, writeBundle, type RuntimeName } from './harness';

const NAME = 'the shim idmaps directory and overlay rootfs under runc and crun';
const RUNTIMES: RuntimeName[] = ['runc', 'crun'];
// Far from the ranges other suites use.
const POOL_START = 1610612736;
/** The mapping an engine chose itself (containerd 1.7 for hostUsers: false), outside the shim's pool. */
const ENGINE_HOST_ID = 1610612736 + 4 * 65536;
const PROGRAM = join(import.meta.dirname, '..', '..', 'dist', 'oci-userns.cjs');

const test = skippedUnless(suite(NAME), NAME, await skipReason({ runtimes: RUNTIMES, commands: ['make', 'cc', 'tar', 'getfattr', 'du'] }));
let work: Workspace | undefined;
let session: Session | undefined;
let shim = '';

/** A config with its own state dir, log and one-block pool for `runtime`. */
function writeConfig(dir: string, runtime: RuntimeName): { path: string; stateDir: string; logFile: string } {
  mkdirSync(dir, { recursive: true });
  for (const file of ['subuid', 'subgid']) writeFileSync(join(dir, file), `0:${POOL_START}:65536\n`);
  const stateDir = join(dir, 'state');
  const logFile = join(dir, 'oci-userns.log');
  const config = { stateDir, logFile, pool: { user: '0', subuidFile: join(dir, 'subuid'), subgidFile: join(dir, 'subgid') }, runtime: { path: runtime, policy: 'systemd' } };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return { path: join(dir, 'config.json'), stateDir, logFile };
}

/** Lines of the session namespace's mountinfo that mention `path`. */
async function sessionMounts(path: string): Promise<string[]> {
  const { stdout } = await session!.run(['cat', '/proc/self/mountinfo']);
  return stdout.split('\n').filter((line) => line.includes(path));
}

/**
 * Boots `bundle` through the shim (create, start), waits for systemd, runs
 * `check` inside, then deletes through the shim. Returns what check returned
 * and the shim's log.
 */
async function bootThroughShim<T>(name: RuntimeName, bundle: string, config: { path: string; logFile: string }, check: (runtime: Runtime, id: string) => Promise<T>): Promise<{ value: T; log: string }> {
  const runtime = new Runtime(session!, name);
  const id = uniqueId(`idmap-shim-${name}`);
  const env = { OCI_USERNS_CONFIG: config.path };
  let value: T;
  try {
    // The container keeps the descriptors create had: a file, not this process's pipes (execa would wait for them).
    const created = await session!.run(['sh', '-c', `"$0" create --bundle "$1" "$2" >"$1/create.out" 2>&1; status=$?; cat "$1/create.out"; exit $status`, shim, bundle, id], { env });
    assert.is(created.exitCode, 0, `shim create: ${created.all}`);
    const started = await session!.run([shim, 'start', id], { env });
    assert.is(started.exitCode, 0, `shim start: ${started.all}`);
    const { state, output } = await waitForSystemd(runtime, id);
    assert.ok(['running', 'degraded'].includes(state), `systemctl is-system-running --wait: ${state}: ${output}`);
    value = await check(runtime, id);
  } finally {
    await session!.run([shim, 'kill', id, 'KILL'], { env });
    for (let i = 0; i < 50 && (await runtime.state(id))?.status !== 'stopped'; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    const deleted = await session!.run([shim, 'delete', '-f', id], { env });
    if (deleted.exitCode !== 0) await runtime.cleanup();
    assert.is(deleted.exitCode, 0, `shim delete: ${deleted.all}`);
  }
  return { value, log: readFileSync(config.logFile, 'utf8') };
}

/** `/`'s mount inside and the owners of / and /etc/shadow. */
async function inside(runtime: Runtime, id: string): Promise<{ root: { fsType: string; idmapped: boolean }; owners: string }> {
  const mounts = visibleMounts(parseMountinfo((await runtime.exec(id, ['cat', '/proc/self/mountinfo'])).stdout));
  const root = mounts.find((m) => m.mountPoint === '/')!;
  const owners = (await runtime.exec(id, ['stat', '-c', '%u:%g %n', '/', '/etc/shadow'])).stdout;
  return { root: { fsType: root.fsType, idmapped: root.mountOptions.includes('idmapped') }, owners };
}

test.before(async () => {
  await Promise.all([buildProgram(), buildIdmapHelper(), debianTarball()]);
  work = Workspace.create('oci-userns-idmap-shim-');
  shim = work.path('oci-userns-runtime');
  symlinkSync(PROGRAM, shim);
  session = await Session.open();
});
test.after(() => {
  session?.close();
  work?.remove();
});

for (const name of RUNTIMES) {
  test(`${name}, directory rootfs behind a root-only directory: idmapped at a private mount point, nothing chowned, unmounted at delete`, async () => {
    const closed = work!.path(name, 'dir', 'closed');
    mkdirSync(closed, { mode: 0o700 });
    chmodSync(closed, 0o700);
    const rootfs = await debianRootfs(join(closed, 'bundle', 'rootfs'));
    const config = writeConfig(work!.path(name, 'dir', 'config'), name);
    const bundle = writeBundle(join(closed, 'bundle'), buildSpec({ runtime: name, rootfs, args: ['/sbin/init'], userns: false, systemd: true }));
    const before = snapshot(rootfs);
    const { value, log } = await bootThroughShim(name, bundle, config, inside);
    assert.equal(value.root, { fsType: 'ext4', idmapped: true }, 'inside, / is an idmapped mount');
    assert.is(value.owners, '0:0 /\n0:42 /etc/shadow');
    assert.match(log, /idmapped the rootfs at a private mount point/);
    assert.not.match(log, /shifting it with chown/);
    const after = snapshot(rootfs);
    const changed = [...before].filter(([path, inode]) => after.has(path) && JSON.stringify(after.get(path)) !== JSON.stringify(inode)).map(([path]) => path);
    assert.equal(changed, [], 'the raw tree keeps every owner, mode, ACL and capability');
    assert.equal(await sessionMounts(config.stateDir), [], 'nothing stays mounted after delete');
    assert.equal(readdirSync(join(config.stateDir, 'rootfs')), [], 'the private directory is gone');
    assert.equal(JSON.parse(readFileSync(join(config.stateDir, 'ranges.json'), 'utf8')).entries, [], 'the range is released');
  });
}

const overlayCases: Array<{ name: RuntimeName; engineUserns: boolean }> = [...RUNTIMES.map((name) => ({ name, engineUserns: false })), { name: 'runc', engineUserns: true }];
for (const { name, engineUserns } of overlayCases) {
  const title = engineUserns ? `${name}, overlay rootfs in a user namespace the engine made (its mappings in the spec, the snapshot owned by host root)` : `${name}, overlay rootfs as containerd's snapshotter mounts it`;
  test(`${title}: rebuilt over idmapped lower layers; the upper holds only what the container wrote`, async () => {
    const hostId = engineUserns ? ENGINE_HOST_ID : POOL_START;
    const snapshots = work!.path(name, `ovl-${engineUserns}`, 'snapshots');
    mkdirSync(snapshots, { mode: 0o700 });
    const lower1 = await debianRootfs(join(snapshots, '1', 'fs'));
    const lower2 = join(snapshots, '2', 'fs');
    mkdirSync(join(lower2, 'etc'), { recursive: true, mode: 0o755 });
    writeFileSync(join(lower2, 'etc', 'second-layer'), 'layer 2\n');
    const upper = join(snapshots, '3', 'fs');
    const workdir = join(snapshots, '3', 'work');
    for (const d of [upper, workdir]) mkdirSync(d, { recursive: true, mode: 0o755 });
    const config = writeConfig(work!.path(name, `ovl-${engineUserns}`, 'config'), name);
    const bundleDir = work!.path(name, `ovl-${engineUserns}`, 'bundle');
    const rootfs = join(bundleDir, 'rootfs');
    mkdirSync(rootfs, { recursive: true, mode: 0o755 });
    const bundle = writeBundle(bundleDir, buildSpec({ runtime: name, rootfs, args: ['/sbin/init'], userns: engineUserns ? { hostId, size: 65536 } : false, systemd: true }));
    const mounted = await session!.run(['mount', '-t', 'overlay', 'overlay', '-o', `index=off,lowerdir=${lower2}:${lower1},upperdir=${upper},workdir=${workdir}`, rootfs]);
    assert.is(mounted.exitCode, 0, mounted.all);
    const lowersBefore = [snapshot(lower1), snapshot(lower2)];
    try {
      const { value, log } = await bootThroughShim(name, bundle, config, async (runtime, id) => {
        const seen = await inside(runtime, id);
        const wrote = await runtime.exec(id, ['sh', '-c', 'cat /etc/second-layer && head -c 65536 /dev/zero > /root/written && chmod u+s /usr/bin/passwd && stat -c "%u:%g %n" /root/written /usr/bin/passwd']);
        return { ...seen, wrote: wrote.stdout };
      });
      assert.equal(value.root, { fsType: 'overlay', idmapped: false });
      assert.is(value.owners, '0:0 /\n0:42 /etc/shadow', 'the lower layers show the image owners inside');
      assert.is(value.wrote, 'layer 2\n0:0 /root/written\n0:0 /usr/bin/passwd');
      assert.match(log, /rebuilt the overlay rootfs over idmapped lower layers/);
      assert.not.match(log, /shifting it with chown/);
      assert.is(lstatSync(join(upper, 'root', 'written')).uid, hostId, 'a file written inside is the range root on disk');
      const kb = Number((await session!.run(['du', '-sk', upper])).stdout.split('\t')[0]);
      const largest = (await session!.run(['sh', '-c', `du -k -d 3 "$0" | sort -n | tail -3 | tac | head -2`, upper])).stdout.replaceAll(upper, '').replace(/\t/g, ' kB ').split('\n').join(', ');
      console.log(`  ${name}: upper after a systemd boot and a 64 KiB write: ${kb} kB (largest: ${largest})`);
      // The chown shift copied the whole rootfs up: about 200 MB.
      assert.ok(kb < 20_000, `the upper holds only what the container wrote (${kb} kB)`);
    } finally {
      await session!.run(['umount', rootfs]);
    }
    const lowersAfter = [snapshot(lower1), snapshot(lower2)];
    for (const [i, before] of lowersBefore.entries()) {
      const changed = [...before].filter(([path, inode]) => JSON.stringify(lowersAfter[i]!.get(path)) !== JSON.stringify(inode)).map(([path]) => path);
      assert.equal(changed, [], `lower layer ${i + 1} keeps every owner, mode, ACL and capability`);
    }
    assert.equal(await sessionMounts(work!.path(name, `ovl-${engineUserns}`)), [], 'nothing stays mounted once the engine unmounted the rootfs');
    assert.equal(await sessionMounts(config.stateDir), []);
  });
}

test.run();
