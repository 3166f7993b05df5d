// The TypeScript side of the idmap helper: where it is looked for, and what
// each exit status becomes (a value, "unsupported: fall back", or a typed
// error), with fake helpers (sh scripts) standing in for the C program.

import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError, SystemError } from '../../lib/errors';
import { rejects } from '../helpers/assert-error';
import { findIdmapHelper, helperVerdict, idmapMount, parseTimings, probeIdmap } from '../../lib/rootfs/idmap-mount';

const found = suite('findIdmapHelper');
found('installed: PREFIX/lib/oci-userns/oci-userns.cjs (or its link PREFIX/bin/oci-userns) finds PREFIX/libexec/oci-userns/oci-userns-idmap', () => {
  const exists = (p: string) => p === '/usr/local/libexec/oci-userns/oci-userns-idmap';
  assert.is(findIdmapHelper({ programPath: '/usr/local/lib/oci-userns/oci-userns.cjs', env: {}, exists }), '/usr/local/libexec/oci-userns/oci-userns-idmap');
  assert.is(findIdmapHelper({ programPath: '/usr/local/bin/oci-userns', env: {}, exists }), '/usr/local/libexec/oci-userns/oci-userns-idmap');
});
found('built: dist/oci-userns.cjs finds dist/oci-userns-idmap beside it', () => {
  const exists = (p: string) => p === '/src/dist/oci-userns-idmap';
  assert.is(findIdmapHelper({ programPath: '/src/dist/oci-userns.cjs', env: {}, exists }), '/src/dist/oci-userns-idmap');
});
found('$OCI_USERNS_IDMAP_HELPER wins; nothing found is undefined', () => {
  assert.is(findIdmapHelper({ programPath: '/x/bin/oci-userns', env: { OCI_USERNS_IDMAP_HELPER: '/opt/h' }, exists: () => false }), '/opt/h');
  assert.is(findIdmapHelper({ programPath: '/x/bin/oci-userns', env: {}, exists: () => false }), undefined);
});
found.run();

const verdict = suite('helperVerdict and parseTimings');
const run = (exitCode: number | null, stderr = '', signal: NodeJS.Signals | null = null) => ({ exitCode, signal, stdout: '', stderr });
verdict('0 is done, 4 is refused with the helper line as reason', () => {
  assert.equal(helperVerdict(run(0), { path: '/r' }), { refused: false });
  assert.equal(helperVerdict(run(4, 'oci-userns-idmap: the kernel refused an idmapped mount (mount_setattr): /r: Invalid argument\n'), { path: '/r' }), {
    refused: true,
    reason: 'oci-userns-idmap: the kernel refused an idmapped mount (mount_setattr): /r: Invalid argument',
  });
});
verdict('2 is an InputError, 6, other statuses and signals are SystemErrors, with the container and path', () => {
  const gone = run(2, 'oci-userns-idmap: cannot open namespace file: /proc/9/ns/user: No such file or directory');
  assert.throws(() => helperVerdict(gone, { path: '/r', containerId: 'c1' }), (e: unknown) => e instanceof InputError && e.containerId === 'c1' && e.message.includes('/proc/9/ns/user'));
  for (const r of [run(6, 'oci-userns-idmap: cannot put the idmapped mount in place (move_mount): /r: Permission denied'), run(1), run(null, '', 'SIGKILL')]) {
    assert.throws(() => helperVerdict(r, { path: '/r' }), (e: unknown) => e instanceof SystemError && (e as SystemError).path === '/r');
  }
  assert.throws(() => helperVerdict(run(null, '', 'SIGKILL'), { path: '/r' }), /exited on SIGKILL/);
});
verdict('timings are read from the ok line; anything else is a SystemError', () => {
  assert.equal(parseTimings('ok setns_us=12 open_tree_us=46 mount_setattr_us=3 move_mount_us=11\n', { path: '/r' }), { setnsUs: 12, openTreeUs: 46, mountSetattrUs: 3, moveMountUs: 11 });
  assert.throws(() => parseTimings('done\n', { path: '/r' }), (e: unknown) => e instanceof SystemError);
});
verdict.run();

const fake = suite('idmapMount and probeIdmap with a fake helper');
let dir = '';
fake.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-idmap-unit-'));
});
fake.after(() => rmSync(dir, { recursive: true, force: true }));
const fakeHelper = (name: string, body: string) => {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\necho "$@" > ${path}.argv\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
};
fake('mount passes the namespace files and the path; exit 0 with timings is idmapped', async () => {
  const helper = fakeHelper('ok', 'echo "ok setns_us=1 open_tree_us=2 mount_setattr_us=3 move_mount_us=4"');
  const outcome = await idmapMount({ helper, source: '/b/rootfs', usernsFile: '/proc/7/ns/user', mntnsFile: '/proc/7/ns/mnt' });
  assert.equal(outcome, { outcome: 'idmapped', timings: { setnsUs: 1, openTreeUs: 2, mountSetattrUs: 3, moveMountUs: 4 } });
  assert.is(readFileSync(`${helper}.argv`, 'utf8'), 'mount --userns /proc/7/ns/user --mntns /proc/7/ns/mnt /b/rootfs\n');
});
fake('exit 4 is unsupported; a missing helper is unsupported too, saying how to get it', async () => {
  const helper = fakeHelper('no', 'echo "oci-userns-idmap: the kernel refused an idmapped mount (mount_setattr): /b: Invalid argument" >&2; exit 4');
  assert.equal(await idmapMount({ helper, source: '/b', usernsFile: '/u' }), { outcome: 'unsupported', reason: 'oci-userns-idmap: the kernel refused an idmapped mount (mount_setattr): /b: Invalid argument' });
  const gone = await idmapMount({ helper: join(dir, 'absent'), source: '/b', usernsFile: '/u' });
  assert.is(gone.outcome, 'unsupported');
  assert.match((gone as { reason: string }).reason, /is not installed \(npm run build/);
  assert.equal(await probeIdmap({ helper, path: '/b' }), { supported: false, reason: 'oci-userns-idmap: the kernel refused an idmapped mount (mount_setattr): /b: Invalid argument' });
});
fake('exit 6 throws a SystemError with the helper line', async () => {
  const helper = fakeHelper('fail', 'echo "oci-userns-idmap: cannot enter the mount namespace: /proc/7/ns/mnt: Operation not permitted" >&2; exit 6');
  const error = await rejects(idmapMount({ helper, source: '/b', usernsFile: '/u', containerId: 'c2' }), SystemError, /^oci-userns-idmap: cannot enter the mount namespace: \/proc\/7\/ns\/mnt: Operation not permitted$/);
  assert.is(error.containerId, 'c2');
});
fake.run();
