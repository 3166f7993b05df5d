// End to end, the safety rule of an idmapped rootfs (issue 12 "Safety"):
// through an idmapped mount, a file container root writes is host root's on
// disk, so a setuid-root file made inside is a host setuid-root file on the
// raw tree. A control run (the bare helper in a shell hook, no rule) shows
// an unprivileged host user getting euid 0 from it. With the oci-userns
// hook (shift.method auto) the same container either has its rootfs behind
// a parent closed to other host users (idmapped; the host user cannot reach
// the file) or, when every host user can reach the rootfs, is shifted with
// chown instead (the file is the range's root, not host root); shift.method
// idmap refuses the open rootfs. The raw tree counts wherever it shows: a
// rootfs behind a closed directory that is a bind mount of a tree under open
// directories is open. Needs root, runc, cc (static), runuser and
// a user named nobody.

import { chmodSync, copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { skippedUnless } from '../helpers/skip';
import {
  buildIdmapHelper,
  buildProgram,
  buildSpec,
  busyboxRootfs,
  IDMAP_HELPER,
  closeParentToRange,
  programHooks,
  Runtime,
  Session,
  skipReason,
  uniqueId,
  Workspace,
  writeBundle,
  writeProgramConfig,
} from './harness';

// Far from the ranges other suites use: the hook's guard sees their live containers host-wide.
const HOST_ID = 3_600_000_000;
const SIZE = 65536;
const NAME = 'idmapped rootfs safety: no host user gets euid 0 from a setuid file made inside';
// Made inside the container by container root: a copy of /bin/euid, setuid.
const MAKE_SETUID = 'cp /bin/euid /suid-euid && chmod 4755 /suid-euid';

const skip = await skipReason({ runtimes: ['runc'], commands: ['make', 'cc', 'runuser'] });
const test = skippedUnless(suite(NAME), NAME, skip);
let work: Workspace | undefined;
let session: Session | undefined;
let euidProgram = '';

/** A busybox rootfs with /bin/euid, a static program that prints its effective uid. */
function rootfs(dir: string): string {
  const root = busyboxRootfs(dir, ['sh', 'cp', 'chmod']);
  copyFileSync(euidProgram, join(root, 'bin', 'euid'));
  chmodSync(join(root, 'bin', 'euid'), 0o755);
  return root;
}

/**
 * What an unprivileged host user (nobody) gets running the file on the raw
 * tree. runuser, not setpriv: setpriv keeps root's capabilities until its
 * execve, so the path lookup would still pass a 0700 directory.
 */
async function runAsNobody(path: string): Promise<{ exitCode?: number; all: string }> {
  const result = await execa('runuser', ['-u', 'nobody', '--', path], { reject: false, all: true });
  return { exitCode: result.exitCode, all: String(result.all ?? '').trim() };
}

async function runContainer(name: string, root: string, hooks: Parameters<typeof buildSpec>[0]['hooks']) {
  const runtime = new Runtime(session!, 'runc');
  const spec = buildSpec({ runtime: 'runc', rootfs: root, args: ['/bin/sh', '-c', MAKE_SETUID], userns: { hostId: HOST_ID, size: SIZE }, hooks });
  const id = uniqueId(`idmap-safety-${name}`);
  try {
    return await runtime.run(id, writeBundle(work!.path(name, 'bundle'), spec));
  } finally {
    await runtime.cleanup();
  }
}

const configured = (dir: string, overrides: Record<string, unknown> = {}) => programHooks(writeProgramConfig(dir, overrides).path);

test.before(async () => {
  await Promise.all([buildProgram(), buildIdmapHelper()]);
  work = Workspace.create('oci-userns-idmap-safety-');
  euidProgram = work.path('euid');
  writeFileSync(`${euidProgram}.c`, '#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf("euid=%u\\n", (unsigned)geteuid()); return 0; }\n');
  await execa('cc', ['-static', '-O2', '-o', euidProgram, `${euidProgram}.c`]);
  session = await Session.open();
});
test.after(() => {
  session?.close();
  work?.remove();
});

test('control: idmapped without the rule (bare helper), the setuid file made inside gives nobody euid 0 on the raw tree', async () => {
  const root = rootfs(work!.path('control', 'rootfs'));
  const hook = work!.path('control', 'hook.sh');
  writeFileSync(hook, `#!/bin/sh\npid=$(sed -n 's/.*"pid": *\\([0-9][0-9]*\\).*/\\1/p')\nexec ${IDMAP_HELPER} mount --mntns /proc/$pid/ns/mnt --userns /proc/$pid/ns/user ${root}\n`, { mode: 0o755 });
  const result = await runContainer('control', root, { createRuntime: [{ path: hook }] });
  assert.is(result.exitCode, 0, result.all);
  assert.is((await runAsNobody(join(root, 'suid-euid'))).all, 'euid=0', 'the danger the rule exists for');
});

test('auto, rootfs behind a parent closed to other host users: idmapped; nobody cannot reach the setuid file', async () => {
  const root = closeParentToRange(rootfs(work!.path('closed', 'rootfs')), HOST_ID);
  const result = await runContainer('closed', root, configured(work!.path('closed', 'config')));
  assert.is(result.exitCode, 0, result.all);
  const made = statSync(join(root, 'suid-euid'));
  assert.equal([made.uid, made.gid, made.mode & 0o7777], [0, 0, 0o4755], 'idmapped: on the raw tree the file is a host setuid-root file');
  const asNobody = await runAsNobody(join(root, 'suid-euid'));
  assert.not.match(asNobody.all, 'euid=0');
  assert.match(asNobody.all, /Permission denied/);
});

test('auto, rootfs every host user can reach: shifted with chown instead; the setuid file is the range root, not host root', async () => {
  const root = rootfs(work!.path('open', 'rootfs'));
  const result = await runContainer('open', root, configured(work!.path('open', 'config')));
  assert.is(result.exitCode, 0, result.all);
  assert.is((await runAsNobody(join(root, 'suid-euid'))).all, `euid=${HOST_ID}`);
});

/**
 * B/closed/rootfs (B/closed: 0700, the range's) is a bind mount, made in
 * the session's mount namespace where the runtime and the hook run, of
 * B/open/rootfs (B, B/open: 0755): the rootfs's own path is closed, its
 * raw tree is not. Unmounted whatever happens.
 */
async function withBoundRootfs(name: string, body: (paths: { open: string; closed: string }) => Promise<void>): Promise<void> {
  const open = rootfs(work!.path(name, 'B', 'open', 'rootfs'));
  const closed = work!.path(name, 'B', 'closed', 'rootfs');
  mkdirSync(closed, { mode: 0o755 });
  closeParentToRange(closed, HOST_ID);
  const bound = await session!.run(['mount', '--bind', open, closed]);
  assert.is(bound.exitCode, 0, bound.all);
  try {
    await body({ open, closed });
  } finally {
    await session!.run(['umount', closed]);
  }
}

test('auto, a closed rootfs path that is a bind mount of a tree under open directories: shifted with chown; nobody gets no euid 0 on the raw tree', async () => {
  await withBoundRootfs('bound', async ({ open, closed }) => {
    const result = await runContainer('bound', closed, configured(work!.path('bound', 'config')));
    assert.is(result.exitCode, 0, result.all);
    assert.is((await runAsNobody(join(open, 'suid-euid'))).all, `euid=${HOST_ID}`, 'the raw tree at the open path holds no host setuid-root file');
  });
});

test('shift.method idmap, a closed rootfs path that is a bind mount of an open tree: refused, naming the open path', async () => {
  await withBoundRootfs('bound-idmap', async ({ open, closed }) => {
    const result = await runContainer('bound-idmap', closed, configured(work!.path('bound-idmap', 'config'), { shift: { method: 'idmap' } }));
    assert.ok(result.exitCode !== 0, `the container must not start: ${result.all}`);
    assert.match(result.all, `at ${open} (a mount that shows it)`);
    assert.not.ok(existsSync(join(open, 'suid-euid')));
  });
});

test('shift.method idmap, rootfs every host user can reach: the container is refused, nothing made', async () => {
  const root = rootfs(work!.path('refused', 'rootfs'));
  const result = await runContainer('refused', root, configured(work!.path('refused', 'config'), { shift: { method: 'idmap' } }));
  assert.ok(result.exitCode !== 0, `the container must not start: ${result.all}`);
  assert.match(result.all, /every host user can reach the rootfs .*close its parent to others \(chown 3600000000:3600000000 /);
  assert.not.ok(existsSync(join(root, 'suid-euid')));
});

test.run();
