import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cgroup2Mount, parseMountinfo } from '../../lib/sys/mountinfo';

const test = suite('mountinfo');
test('fields, with escaped mount points and roots', () => {
  const [mount] = parseMountinfo('50 31 0:40 /sub\\040dir /mnt/with\\040space rw,nosuid - ext4 /dev/sda1 rw,errors=remount-ro\n');
  assert.equal(mount, { device: '0:40', root: '/sub dir', mountPoint: '/mnt/with space', mountOptions: ['rw', 'nosuid'], fsType: 'ext4', superOptions: ['rw', 'errors=remount-ro'] });
});
test('cgroup2Mount: the hybrid layout, and a later mount hiding an earlier one', () => {
  const hybrid = [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  ].join('\n');
  assert.is(cgroup2Mount(hybrid)?.mountPoint, '/sys/fs/cgroup/unified');
  const trick = `${hybrid}\n900 23 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 none rw`;
  assert.is(cgroup2Mount(trick)?.mountPoint, '/sys/fs/cgroup');
  const hidden = `${hybrid}\n901 23 0:50 / /sys/fs/cgroup rw - tmpfs tmpfs rw`;
  assert.is(cgroup2Mount(hidden), undefined);
});
test.run();
