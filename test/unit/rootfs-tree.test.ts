import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { treeExposures, treeKey, treeOf } from '../../lib/rootfs/tree';
import { parseMountinfo, visibleMounts } from '../../lib/sys/mountinfo';

// A host as the bind-mount repro leaves it: / on 8:1, /srv on 8:2, the
// rootfs under /srv bound elsewhere, and the shim's idmapped clone of it.
const MOUNTINFO = [
  '22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw',
  '30 22 8:2 / /srv rw,relatime - ext4 /dev/sdb1 rw',
  '31 22 8:2 /b/closed/rootfs /mnt/open\\040view rw,relatime - ext4 /dev/sdb1 rw',
  '32 22 8:2 /b/closed/rootfs /var/lib/oci-userns/rootfs/c1/root rw,relatime,idmapped - ext4 /dev/sdb1 rw',
  '33 22 8:2 /b/closed/rootfs/usr /opt/usr rw,relatime - ext4 /dev/sdb1 rw',
  '34 22 8:2 /b/other /opt/other rw,relatime - ext4 /dev/sdb1 rw',
  '35 22 8:2 /b /data rw,relatime - ext4 /dev/sdb1 rw',
  '36 22 0:50 / /srv/b/closed/rootfs/proc rw - proc proc rw',
].join('\n');
const mounts = visibleMounts(parseMountinfo(MOUNTINFO));

const test = suite('tree identity and exposures over mountinfo');
test('treeOf: the longest mount above the path gives the device; its root plus the rest the path inside it', () => {
  assert.equal(treeOf(mounts, '/srv/b/closed/rootfs'), { device: '8:2', path: '/b/closed/rootfs' });
  assert.equal(treeOf(mounts, '/mnt/open view'), { device: '8:2', path: '/b/closed/rootfs' }, 'a plain bind (escaped name) is the same tree');
  assert.equal(treeOf(mounts, '/var/lib/oci-userns/rootfs/c1/root'), { device: '8:2', path: '/b/closed/rootfs' }, 'the idmapped clone is the same tree');
  assert.equal(treeOf(mounts, '/data/closed/rootfs'), { device: '8:2', path: '/b/closed/rootfs' });
  assert.equal(treeOf(mounts, '/srv'), { device: '8:2', path: '/' });
  assert.equal(treeOf(mounts, '/srvx/rootfs'), { device: '8:1', path: '/srvx/rootfs' }, 'a prefix of a name is not a parent');
  assert.is(treeKey(treeOf(mounts, '/mnt/open view')!), '8:2:/b/closed/rootfs');
  assert.is(treeOf([], '/x'), undefined);
});
test('treeExposures: every non-idmapped mount of the device showing the tree or a part of it', () => {
  assert.equal(treeExposures(mounts, { device: '8:2', path: '/b/closed/rootfs' }), ['/data/closed/rootfs', '/mnt/open view', '/opt/usr', '/srv/b/closed/rootfs']);
  assert.equal(treeExposures(mounts, { device: '8:2', path: '/b/other' }), ['/data/other', '/opt/other', '/srv/b/other']);
  assert.equal(treeExposures(mounts, { device: '8:1', path: '/home' }), ['/home']);
});
test('a later mount over the same point hides the earlier one', () => {
  const hidden = visibleMounts(parseMountinfo(`${MOUNTINFO}\n40 22 0:60 / /mnt/open\\040view rw - tmpfs tmpfs rw`));
  assert.not.ok(treeExposures(hidden, { device: '8:2', path: '/b/closed/rootfs' }).includes('/mnt/open view'));
});
test.run();
