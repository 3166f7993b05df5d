// The shim's idmapped rootfs decisions, pure: an overlay's layers read from
// its mountinfo super options (as containerd's snapshotter and podman mount
// them), and which route a rootfs takes (idmapped directory, rebuilt
// overlay, or the chown shift with the reason).

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { overlayLayout, overlayMountOptions } from '../../lib/rootfs/overlay';
import { privateDir, releaseShimRootfs, shimRoute, type ShimRootfsFacts } from '../../lib/rootfs/shim-rootfs';
import { parseMountinfo } from '../../lib/sys/mountinfo';
import { DEFAULTS } from '../../lib/config/config';
import { HostError } from '../../lib/errors';
import { nullLogger } from '../../lib/log/logger';
import { parseIdMap } from '../../lib/oci/idmap';
import { readRegistry, writeRegistry, type RangeEntry } from '../../lib/ranges/registry';
import { readTreeKey } from '../../lib/rootfs/tree';
import { prepareRootfs } from '../../lib/shim/rootfs';
import { rejects } from '../helpers/assert-error';

const SNAP = '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots';
const containerd = parseMountinfo(
  `312 28 0:67 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw,relatime - overlay overlay rw,lowerdir=${SNAP}/12/fs:${SNAP}/11/fs,upperdir=${SNAP}/13/fs,workdir=${SNAP}/13/work,index=off\n`,
)[0]!;
const ext4 = parseMountinfo('40 28 8:1 /srv/rootfs /srv/rootfs rw,relatime - ext4 /dev/sda1 rw\n')[0]!;
const RANGE = { uid: 300000, gid: 300000 };

const layout = suite('overlayLayout');
layout("containerd's snapshot mount: lower layers top first, upper, work, other options carried", () => {
  assert.equal(overlayLayout(containerd), { lowerdirs: [`${SNAP}/12/fs`, `${SNAP}/11/fs`], upperdir: `${SNAP}/13/fs`, workdir: `${SNAP}/13/work`, options: ['index=off'] });
  const l = overlayLayout(containerd);
  if ('unsupported' in l) throw new Error('unexpected');
  assert.is(overlayMountOptions(l, ['0', '1']), `lowerdir=0:1,upperdir=${SNAP}/13/fs,workdir=${SNAP}/13/work,index=off`);
});
layout('refused: not an overlay, read-only (no upper), data-only layers, escaped paths', () => {
  assert.match(String((overlayLayout(ext4) as { unsupported: string }).unsupported), /ext4 mount, not an overlay/);
  const ro = parseMountinfo('1 2 0:5 / /r ro - overlay overlay ro,lowerdir=/a:/b\n')[0]!;
  assert.match((overlayLayout(ro) as { unsupported: string }).unsupported, /no upper layer/);
  const dataOnly = parseMountinfo('1 2 0:5 / /r rw - overlay overlay rw,lowerdir=/a::/b,upperdir=/u,workdir=/w\n')[0]!;
  assert.match((overlayLayout(dataOnly) as { unsupported: string }).unsupported, /data-only/);
  const comma = parseMountinfo('1 2 0:5 / /r rw - overlay overlay rw,lowerdir=/a\\054b,upperdir=/u,workdir=/w\n')[0]!;
  assert.match((overlayLayout(comma) as { unsupported: string }).unsupported, /"\/a,b"/);
});
layout.run();

const route = suite('shimRoute');
const facts = (over: Partial<ShimRootfsFacts>): ShimRootfsFacts => ({ rootOwner: { uid: 0, gid: 0 }, shiftRecorded: false, ...over });
route('a directory owned by host root behind a root-only directory: idmapped', () => {
  assert.equal(shimRoute(facts({ rawClosedBy: '/var/lib/containers' }), RANGE), { route: 'directory' });
});
route('a directory every host user can reach: chown (the safety rule)', () => {
  assert.match(String((shimRoute(facts({}), RANGE) as { reason: string }).reason), /every host user can reach the raw rootfs/);
});
route('a tree already shifted, half shifted, or owned by another range: chown (its engine decides)', () => {
  assert.equal(shimRoute(facts({ rawClosedBy: '/x', shiftRecorded: true }), RANGE).route, 'chown');
  assert.equal(shimRoute(facts({ rawClosedBy: '/x', rootOwner: RANGE }), RANGE).route, 'chown');
});
route('an idmapped mount (podman --rootfs DIR:idmap) is not idmapped again', () => {
  const idmapped = { ...ext4, mountOptions: ['rw', 'idmapped'] };
  assert.match(String((shimRoute(facts({ rawClosedBy: '/x', mountAt: idmapped }), RANGE) as { reason: string }).reason), /idmapped mount already/);
});
route('an overlay with a fresh upper, or one that is the range root already: rebuilt', () => {
  const lowerOwners = [{ uid: 0, gid: 0 }, { uid: 0, gid: 0 }];
  assert.is(shimRoute(facts({ mountAt: containerd, upper: { uid: 0, gid: 0, empty: true }, lowerOwners }), RANGE).route, 'overlay');
  assert.is(shimRoute(facts({ mountAt: containerd, upper: { ...RANGE, empty: false }, lowerOwners }), RANGE).route, 'overlay');
});
route('an overlay whose upper holds host-owned files, or whose lower is not host root: chown', () => {
  const lowerOwners = [{ uid: 0, gid: 0 }];
  assert.match(String((shimRoute(facts({ mountAt: containerd, upper: { uid: 0, gid: 0, empty: false }, lowerOwners }), RANGE) as { reason: string }).reason), /holds files/);
  assert.match(String((shimRoute(facts({ mountAt: containerd, upper: { uid: 0, gid: 0, empty: true }, lowerOwners: [{ uid: 200000, gid: 200000 }] }), RANGE) as { reason: string }).reason), /lower layer/);
});
route.run();

// Under shift.method idmap a rootfs the shim cannot idmap fails the container;
// it never comes to own the raw tree, so another idmapped container on it is
// not what stops it.
const claim = suite('the shim under shift.method idmap, on a tree it cannot idmap');
claim('fails for the idmap refusal, not as "in use" by an idmapped container sharing the tree, and keeps its mark', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'oci-userns-shim-claim-'));
  try {
    // Under /tmp: every host user can reach it, so the chown route.
    const rootfs = join(dir, 'rootfs');
    mkdirSync(rootfs);
    const stateDir = join(dir, 'state');
    mkdirSync(stateDir, { mode: 0o700 });
    const X = parseIdMap('0:100000:65536');
    const Y = parseIdMap('0:300000:65536');
    const tree = readTreeKey(rootfs);
    const on = { rootfs, ...(tree ? { rootfsTree: tree } : {}), rootfsIdmapped: true as const, since: '2026-01-01T00:00:00Z', source: 'shim' as const };
    const b: RangeEntry = { id: 'b', uidMappings: Y, gidMappings: Y, ...on };
    writeRegistry(stateDir, [{ id: 'a', uidMappings: X, gidMappings: X, ...on }, b]);
    const config = { ...DEFAULTS, stateDir, shift: { ...DEFAULTS.shift, method: 'idmap' as const } };
    const { message } = await rejects(prepareRootfs(rootfs, b, 'b', { config, logger: nullLogger }), HostError, 'cannot be idmapped here');
    assert.not.match(message, 'in use');
    assert.is((await readRegistry(stateDir)).find((e) => e.id === 'b')?.rootfsIdmapped, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
claim.run();
const release = suite('releaseShimRootfs');
release('a container without a private rootfs directory: nothing to undo, mountinfo not even read', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'oci-userns-release-'));
  try {
    assert.is(await releaseShimRootfs({ stateDir, containerId: 'c1', mountinfoPath: join(stateDir, 'no-mountinfo') }), false);
    mkdirSync(join(privateDir(stateDir, 'c1'), 'root'), { recursive: true });
    writeFileSync(join(stateDir, 'mountinfo'), '');
    assert.is(await releaseShimRootfs({ stateDir, containerId: 'c1', mountinfoPath: join(stateDir, 'mountinfo') }), true, 'an empty directory left: removed');
    assert.not.ok(existsSync(privateDir(stateDir, 'c1')));
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
});
release.run();
