// The rootfs step with real runc containers and the built hook at every
// stage (issue 14): a tree deleted and unpacked again at the same path is
// shifted again, for the same range and another (item 2); a tree a running
// container uses is not shifted to other ids under it (item 3); a file
// capability v3 whose rootid is a build namespace's works inside (item 6).
// Needs root, runc, busybox-static and setcap.
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BUSYBOX, buildIdmapHelper, buildProgram, buildSpec, busyboxRootfs, closeParentToRange, PROGRAM, programHook, Runtime, Session, skipReason, uniqueId, Workspace, writeBundle, writeProgramConfig } from './harness';
import { skippedUnless } from '../helpers/skip';
import type { Spec } from '../../lib/oci/spec';

const NAME = 'the rootfs step under real runc: replaced trees, trees in use, capabilities';
// Far from the ranges other suites use: the hook's guard sees their live containers host-wide.
const X = { hostId: 3_500_000_000, size: 65536 };
const Y = { hostId: 3_500_131_072, size: 65536 };
/** The shim's pool (private subuid and subgid files; blocks are 65536-aligned), and where `oci-userns shift` is asked to move a tree in use. */
const POOL_START = 53_410 * 65536;
const ELSEWHERE = 3_700_000_000;
const STAGES = ['prestart', 'createRuntime', 'poststop'] as const;

const skip = await skipReason({ runtimes: ['runc'], commands: ['setcap'], files: [{ path: BUSYBOX, hint: 'apt-get install busybox-static' }] });
const test = skippedUnless(suite(NAME), NAME, skip);
let work: Workspace | undefined;
let session: Session | undefined;
let runc: Runtime | undefined;

/** A busybox rootfs as an image unpacks it, owned by host root, with a file only root may read. */
function unpack(dir: string): string {
  rmSync(dir, { recursive: true, force: true });
  busyboxRootfs(dir);
  writeFileSync(join(dir, 'etc', 'app.conf'), 'app\n', { mode: 0o600 });
  chmodSync(dir, 0o755);
  return dir;
}

function spec(rootfs: string, configPath: string, args: string[], userns: { hostId: number; size: number }): Spec {
  return buildSpec({ runtime: 'runc', rootfs, args, userns, hooks: Object.fromEntries(STAGES.map((stage) => [stage, [programHook(stage, configPath)]])) });
}

const log = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');

test.before(async () => {
  await Promise.all([buildProgram(), buildIdmapHelper()]);
  work = Workspace.create('oci-userns-rootfs-runc-');
  session = await Session.open();
  runc = new Runtime(session, 'runc');
});
test.after.each(async () => {
  await runc?.cleanup();
});
test.after(() => {
  session?.close();
  work?.remove();
});

test('a rootfs deleted and unpacked again at the same path is shifted again, for the same range and for another', async () => {
  const rootfs = work!.path('replaced', 'rootfs');
  const config = writeProgramConfig(work!.path('replaced', 'config'));
  for (const [i, range] of [X, X, Y].entries()) {
    unpack(rootfs);
    const bundle = writeBundle(work!.path('replaced', `bundle${i}`), spec(rootfs, config.path, ['/bin/cat', '/etc/app.conf'], range));
    const result = await runc!.run(uniqueId(`replaced-${i}`), bundle);
    assert.is(result.exitCode, 0, `run ${i} (host id ${range.hostId}): ${result.all}\n${log(config.logFile)}`);
    assert.match(result.stdout, 'app', `run ${i} read a file only root may read`);
  }
});

test('a rootfs a running container uses is not shifted to other ids for another container: refused, naming it', async () => {
  const rootfs = unpack(work!.path('in-use', 'rootfs'));
  const config = writeProgramConfig(work!.path('in-use', 'config'));
  const a = uniqueId('in-use-a');
  const started = await runc!.run(a, writeBundle(work!.path('in-use', 'a'), spec(rootfs, config.path, ['/bin/sleep', '60'], X)), { detach: true });
  assert.is(started.exitCode, 0, `${started.all}\n${log(config.logFile)}`);
  const b = uniqueId('in-use-b');
  const refused = await runc!.run(b, writeBundle(work!.path('in-use', 'b'), spec(rootfs, config.path, ['/bin/true'], Y)));
  assert.ok(refused.exitCode !== 0, `B must not start: ${refused.all}`);
  assert.match(log(config.logFile), `is in use by container ${a}`);
  const read = await runc!.exec(a, ['/bin/cat', '/etc/app.conf']);
  assert.is(read.exitCode, 0, `A still reads its files: ${read.all}`);
  assert.is(execFileSync('stat', ['-c', '%u', join(rootfs, 'etc', 'app.conf')], { encoding: 'utf8' }).trim(), String(X.hostId), 'the tree kept A\'s ids');
});

/** `oci-userns ARGS` in the session (its mounts), configured by `configPath`. */
const cli = (configPath: string, args: string[]) => session!.run([process.execPath, PROGRAM, ...args], { env: { OCI_USERNS_CONFIG: configPath } });

/** A busybox bundle behind a root-only directory (the shim's directory route; `open`: every host user can reach it, so the chown shift), a config with policy always and a private pool of `blocks` blocks, and the shim. */
function shimBundle(name: string, blocks = 1, open = false, shift?: Record<string, unknown>): { rootfs: string; bundle: string; shim: string; config: { path: string; stateDir: string; logFile: string }; env: Record<string, string> } {
  const closed = work!.path(name, 'closed');
  mkdirSync(closed, { mode: open ? 0o755 : 0o700 });
  const rootfs = unpack(join(closed, 'bundle', 'rootfs'));
  const dir = work!.path(name, 'config');
  mkdirSync(dir, { recursive: true });
  for (const file of ['subuid', 'subgid']) writeFileSync(join(dir, file), `0:${POOL_START}:${blocks * 65536}\n`);
  const config = writeProgramConfig(dir, { pool: { user: '0', subuidFile: join(dir, 'subuid'), subgidFile: join(dir, 'subgid') }, runtime: { path: 'runc', policy: 'always' }, ...(shift ? { shift } : {}) });
  const bundle = writeBundle(join(closed, 'bundle'), buildSpec({ runtime: 'runc', rootfs, args: ['/bin/sleep', '60'], userns: false }));
  const shim = work!.path(name, 'oci-userns-runtime');
  symlinkSync(PROGRAM, shim);
  return { rootfs, bundle, shim, config, env: { OCI_USERNS_CONFIG: config.path } };
}

/** `shim create` and `shim start` of `id` from `bundle`; create's output goes to a file, so that runc's console does not hold the pipe. */
async function shimStart(shim: string, bundle: string, id: string, env: Record<string, string>, logFile: string): Promise<void> {
  const created = await session!.run(['sh', '-c', `"$0" create --bundle "$1" "$2" >"$1/create.out" 2>&1; status=$?; cat "$1/create.out"; exit $status`, shim, bundle, id], { env });
  assert.is(created.exitCode, 0, `shim create ${id}: ${created.all}\n${log(logFile)}`);
  const started = await session!.run([shim, 'start', id], { env });
  assert.is(started.exitCode, 0, `shim start ${id}: ${started.all}`);
}

/** Kills and deletes `ids` through the shim. */
async function shimRemove(shim: string, ids: string[], env: Record<string, string>): Promise<void> {
  for (const id of ids) {
    await session!.run([shim, 'kill', id, 'KILL'], { env });
    for (let i = 0; i < 50 && (await runc!.state(id))?.status !== 'stopped'; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    await session!.run([shim, 'delete', '-f', id], { env });
  }
}

/** The host uid of container root in each of `ids`, each container having read a file only its root may read. */
async function rootHostIds(ids: string[], logFile: string): Promise<Set<string>> {
  const hosts = new Set<string>();
  for (const id of ids) {
    const read = await runc!.exec(id, ['/bin/sh', '-c', 'cat /etc/app.conf && cat /proc/self/uid_map']);
    assert.is(read.exitCode, 0, `${id} reads a file only its root may read: ${read.all}\n${log(logFile)}`);
    hosts.add(read.stdout.trim().split(/\s+/)[2]!);
  }
  return hosts;
}

test('a tree the shim idmapped for a running container is not shifted by oci-userns shift, through its path or a bind mount: refused, naming it; unshift leaves it as it is', async () => {
  // The shim's directory route: the raw tree behind a root-only directory; the hook then sees only the shim's private mount.
  const { rootfs, bundle, shim, config, env } = shimBundle('shim-in-use');
  const view = work!.path('shim-in-use', 'view');
  mkdirSync(view);
  const id = uniqueId('shim-in-use');
  try {
    await shimStart(shim, bundle, id, env, config.logFile);
    assert.match(log(config.logFile), 'idmapped the rootfs at a private mount point');
    assert.is((await session!.run(['mount', '--bind', rootfs, view])).exitCode, 0);
    for (const [what, args] of [
      ['shift of its path', ['shift', '--to', String(ELSEWHERE), rootfs]],
      ['shift through a bind mount', ['shift', '--to', String(ELSEWHERE), view]],
    ] as const) {
      const refused = await cli(config.path, [...args]);
      assert.is(refused.exitCode, 5, `${what}: ${refused.all}`);
      assert.match(refused.all, `in use by container ${id}`, what);
    }
    // The idmapped container needs the tree's original owners, which it has: nothing to undo.
    const unshifted = await cli(config.path, ['unshift', view]);
    assert.is(unshifted.exitCode, 0, unshifted.all);
    assert.is(execFileSync('stat', ['-c', '%u:%g', join(rootfs, 'etc', 'app.conf')], { encoding: 'utf8' }).trim(), '0:0');
    const read = await runc!.exec(id, ['/bin/cat', '/etc/app.conf']);
    assert.is(read.exitCode, 0, `the container still reads its files: ${read.all}`);
  } finally {
    await session!.run(['umount', view]);
    await shimRemove(shim, [id], env);
  }
});

test('containers started from one bundle through the shim (runc\'s list and --root tests) each get a range and share the raw tree through idmapped mounts; shifting it is refused while they run', async () => {
  const { rootfs, bundle, shim, config, env } = shimBundle('shim-shared', 4);
  const ids = [uniqueId('shared-a'), uniqueId('shared-b'), uniqueId('shared-c')];
  try {
    for (const id of ids) await shimStart(shim, bundle, id, env, config.logFile);
    const hosts = await rootHostIds(ids, config.logFile);
    assert.is(hosts.size, 3, `each container has its own range: ${[...hosts].join(', ')}`);
    assert.is(execFileSync('stat', ['-c', '%u:%g', join(rootfs, 'etc', 'app.conf')], { encoding: 'utf8' }).trim(), '0:0', 'the raw tree keeps its owners');
    const refused = await cli(config.path, ['shift', '--to', String(ELSEWHERE), rootfs]);
    assert.is(refused.exitCode, 5, refused.all);
    assert.match(refused.all, `in use by container ${ids[0]} (idmapped`);
  } finally {
    await shimRemove(shim, ids, env);
  }
});

test('under shift.mode always-verify, containers started from one closed bundle through the shim each get their own range and keep their idmapped mark', async () => {
  const { rootfs, bundle, shim, config, env } = shimBundle('shim-verify', 4, false, { mode: 'always-verify' });
  const ids = [uniqueId('verify-a'), uniqueId('verify-b')];
  try {
    for (const id of ids) await shimStart(shim, bundle, id, env, config.logFile);
    const entries = JSON.parse(readFileSync(join(config.stateDir, 'ranges.json'), 'utf8')).entries as Array<{ id: string; rootfsIdmapped?: true; uidMappings: Array<{ hostID: number }> }>;
    const mine = ids.map((id) => entries.find((e) => e.id === id));
    assert.is.not(mine[0]?.uidMappings[0]?.hostID, mine[1]?.uidMappings[0]?.hostID, `idmapped containers do not share a range: ${JSON.stringify(entries)}\n${log(config.logFile)}`);
    for (const e of mine) assert.is(e?.rootfsIdmapped, true, `${e?.id} sees the tree through the shim's idmapped mount: ${JSON.stringify(e)}`);
    assert.is(execFileSync('stat', ['-c', '%u:%g', join(rootfs, 'etc', 'app.conf')], { encoding: 'utf8' }).trim(), '0:0', 'the raw tree keeps its owners');
  } finally {
    await shimRemove(shim, ids, env);
  }
});

test('under shift.mode always-verify, oci-userns shift of a tree the shim idmapped for a running container, into that container\'s own range, is refused', async () => {
  const { rootfs, bundle, shim, config, env } = shimBundle('shim-verify-shift', 1, false, { mode: 'always-verify' });
  const id = uniqueId('verify-shift');
  try {
    await shimStart(shim, bundle, id, env, config.logFile);
    const shifted = await cli(config.path, ['shift', '--to', String(POOL_START), rootfs]);
    const read = await runc!.exec(id, ['/bin/cat', '/etc/app.conf']);
    assert.is(shifted.exitCode, 5, `the container sees the raw tree through an idmapped mount: shifting it takes its files (${read.all.trim()}): ${shifted.all}`);
    assert.is(read.exitCode, 0, `the container still reads its files: ${read.all}`);
  } finally {
    await shimRemove(shim, [id], env);
    await cli(config.path, ['unshift', rootfs]);
  }
});

test('a tree the shim idmapped for a systemd container in a user namespace the engine made is recorded as idmapped, and oci-userns shift into the engine\'s range is refused', async () => {
  // containerd 1.7 with hostUsers: false: the engine's mappings in the spec, the shim completes the spec and idmaps the directory rootfs.
  const { rootfs, bundle, shim, config, env } = shimBundle('shim-engine');
  writeBundle(bundle, { ...buildSpec({ runtime: 'runc', rootfs, args: ['/bin/sleep', '60'], userns: X }), annotations: { 'io.oci-userns.systemd': 'true' } });
  const id = uniqueId('shim-engine');
  try {
    await shimStart(shim, bundle, id, env, config.logFile);
    assert.match(log(config.logFile), 'idmapped the rootfs at a private mount point');
    const entry = (JSON.parse(readFileSync(join(config.stateDir, 'ranges.json'), 'utf8')).entries as Array<{ id: string; rootfsIdmapped?: true }>).find((e) => e.id === id);
    const shifted = await cli(config.path, ['shift', '--to', String(X.hostId), rootfs]);
    const read = await runc!.exec(id, ['/bin/cat', '/etc/app.conf']);
    assert.is(shifted.exitCode, 5, `the container sees the raw tree through an idmapped mount (its entry: ${JSON.stringify(entry)}); shifting it takes its files (${read.all.trim()}): ${shifted.all}`);
    assert.is(read.exitCode, 0, `the container still reads its files: ${read.all}`);
  } finally {
    await shimRemove(shim, [id], env);
    await cli(config.path, ['unshift', rootfs]);
  }
});

test('containers started through the shim from one bundle every host user can reach share the range its tree was shifted into, and all run', async () => {
  const { rootfs, bundle, shim, config, env } = shimBundle('shim-open', 4, true);
  const ids = [uniqueId('open-a'), uniqueId('open-b')];
  try {
    for (const id of ids) await shimStart(shim, bundle, id, env, config.logFile);
    const maps = await rootHostIds(ids, config.logFile);
    assert.is(maps.size, 1, `one range: ${[...maps].join(', ')}`);
    assert.is(execFileSync('stat', ['-c', '%u', join(rootfs, 'etc', 'app.conf')], { encoding: 'utf8' }).trim(), [...maps][0], 'the tree is in that range');
    assert.match(log(config.logFile), `container ${ids[1]} shares the range of container ${ids[0]}`);
  } finally {
    await shimRemove(shim, ids, env);
  }
});

test('a tree chown-shifted for an earlier container is shifted again for the next one, not idmapped over the other range\'s ids', async () => {
  const rootfs = unpack(work!.path('shifted-away', 'parent', 'rootfs'));
  const first = writeProgramConfig(work!.path('shifted-away', 'chown'), { shift: { method: 'chown' } });
  const second = writeProgramConfig(work!.path('shifted-away', 'auto'), { stateDir: first.stateDir });
  for (const [i, range, config] of [[0, X, first], [1, Y, second]] as const) {
    closeParentToRange(rootfs, range.hostId);
    const result = await runc!.run(uniqueId(`shifted-away-${i}`), writeBundle(work!.path('shifted-away', `bundle${i}`), spec(rootfs, config.path, ['/bin/cat', '/etc/app.conf'], range)));
    assert.is(result.exitCode, 0, `run ${i} (host id ${range.hostId}): ${result.all}\n${log(config.logFile)}`);
    assert.match(result.stdout, 'app', `run ${i} read a file only root may read`);
  }
  assert.match(log(second.logFile), 'is not at its original owners');
  assert.is(execFileSync('stat', ['-c', '%u', join(rootfs, 'etc', 'app.conf')], { encoding: 'utf8' }).trim(), String(Y.hostId));
});

test('a v3 file capability with rootid 1000 (set in a build namespace) works inside, for a user other than root', async () => {
  const rootfs = unpack(work!.path('caps', 'rootfs'));
  const config = writeProgramConfig(work!.path('caps', 'config'));
  copyFileSync(BUSYBOX, join(rootfs, 'bin', 'ping'));
  chmodSync(join(rootfs, 'bin', 'ping'), 0o755);
  execFileSync('setcap', ['-n', '1000', 'cap_net_raw=ep', join(rootfs, 'bin', 'ping')]);
  copyFileSync(BUSYBOX, join(rootfs, 'bin', 'ping-nocap'));
  chmodSync(join(rootfs, 'bin', 'ping-nocap'), 0o755);
  chownSync(join(rootfs, 'tmp'), 1000, 1000);
  const s = spec(rootfs, config.path, ['/bin/sh', '-c', '/bin/ping -c 1 -W 2 127.0.0.1 >/dev/null && echo CAP-WORKS; ln -s ping-nocap /tmp/ping && /tmp/ping -c 1 -W 2 127.0.0.1 >/dev/null 2>&1 || echo WITHOUT-FAILS'], X);
  s.process!.user = { uid: 1000, gid: 1000 };
  s.process!.noNewPrivileges = false;
  const bounding = [...((s.process!.capabilities as { bounding?: string[] }).bounding ?? []), 'CAP_NET_RAW'];
  s.process!.capabilities = { bounding, effective: [], permitted: [], inheritable: [], ambient: [] };
  const result = await runc!.run(uniqueId('caps'), writeBundle(work!.path('caps', 'bundle'), s));
  assert.is(result.exitCode, 0, `${result.all}\n${log(config.logFile)}`);
  assert.match(result.stdout, 'WITHOUT-FAILS', 'without the capability, ping is refused (so the capability is what makes it work)');
  assert.match(result.stdout, 'CAP-WORKS', `ping with the shifted capability: ${result.all}\n${execFileSync('getcap', ['-n', join(rootfs, 'bin', 'ping')], { encoding: 'utf8' })}`);
});

test.run();
