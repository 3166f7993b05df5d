// idmapRootfs without root: a fake /proc and fake helpers (sh scripts) stand
// in for the container and the C program. What it passes the helper, when
// it does not call it (the runtime idmapped the rootfs already), and the
// errors when the container process is gone before or during the call.

import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HostError } from '../../lib/errors';
import { idmapRootfs } from '../../lib/rootfs/idmap-rootfs';
import { rejects } from '../helpers/assert-error';

const test = suite('idmapRootfs');
let dir = '';
let proc = '';
let rootfs = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-idmap-rootfs-'));
  proc = join(dir, 'proc');
  rootfs = join(dir, 'bundle', 'rootfs');
  mkdirSync(rootfs, { recursive: true });
  mkdirSync(join(proc, '42'), { recursive: true });
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

/** The container's mountinfo: the runtime's bind of the rootfs onto itself, with `options`. */
const mountinfo = (options: string) => writeFileSync(join(proc, '42', 'mountinfo'), `73 52 254:0 ${rootfs} ${rootfs} ${options} - ext4 /dev/vda rw\n`);
const fakeHelper = (body: string) => {
  const path = join(dir, 'helper');
  writeFileSync(path, `#!/bin/sh\necho "$@" > ${path}.argv\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
};

test("the helper gets the container's namespace files and the rootfs's real path", async () => {
  mountinfo('rw,relatime');
  const helper = fakeHelper('echo "ok setns_us=10 open_tree_us=40 mount_setattr_us=3 move_mount_us=9"');
  const result = await idmapRootfs({ pid: 42, rootfs: join(dir, 'bundle', '.', 'rootfs'), containerId: 'c1', helper, procRoot: proc });
  assert.is(result.action, 'idmapped');
  assert.equal(result.action === 'idmapped' && result.timings, { setnsUs: 10, openTreeUs: 40, mountSetattrUs: 3, moveMountUs: 9 });
  assert.is(readFileSync(`${helper}.argv`, 'utf8'), `mount --userns ${proc}/42/ns/user --mntns ${proc}/42/ns/mnt ${rootfs}\n`);
});
test('a rootfs the runtime idmapped itself is left alone: no helper run, no chown fallback', async () => {
  mountinfo('rw,relatime,idmapped');
  const helper = fakeHelper('exit 6');
  assert.equal(await idmapRootfs({ pid: 42, rootfs, containerId: 'c1', helper, procRoot: proc }), { action: 'already-idmapped', rootfs });
});
test('a refusal is a value for the caller to fall back on', async () => {
  mountinfo('rw');
  const helper = fakeHelper(`echo "oci-userns-idmap: the kernel refused an idmapped mount (mount_setattr): ${rootfs}: Invalid argument" >&2; exit 4`);
  assert.equal(await idmapRootfs({ pid: 42, rootfs, containerId: 'c1', helper, procRoot: proc }), {
    action: 'unsupported',
    rootfs,
    reason: `oci-userns-idmap: the kernel refused an idmapped mount (mount_setattr): ${rootfs}: Invalid argument`,
  });
});
test('the container process gone before, or during the helper run: HostError (exit 4), start it again', async () => {
  await rejects(idmapRootfs({ pid: 43, rootfs, containerId: 'c1', helper: fakeHelper('exit 0'), procRoot: proc }), HostError, /^container process 43 exited while the hook/);
  mountinfo('rw');
  const vanishing = fakeHelper(`rm -rf ${proc}/42; echo "oci-userns-idmap: cannot open namespace file: ${proc}/42/ns/user: No such file or directory" >&2; exit 6`);
  const error = await rejects(idmapRootfs({ pid: 42, rootfs, containerId: 'c1', helper: vanishing, procRoot: proc }), HostError, /^container process 42 exited while the hook/);
  assert.is(error.containerId, 'c1');
});
test.run();
