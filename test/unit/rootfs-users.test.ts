import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RefusedError } from '../../lib/errors';
import { IDENTITY, parseIdMap } from '../../lib/oci/idmap';
import type { RangeEntry } from '../../lib/ranges/registry';
import { refuseRootfsInUse } from '../../lib/ranges/rootfs-users';
import { rejects } from '../helpers/assert-error';

const X = parseIdMap('0:100000:65536');
const Y = parseIdMap('0:300000:65536');
// No pid recorded: allocated and not started yet, which counts as live.
const a: RangeEntry = { id: 'a', uidMappings: X, gidMappings: X, since: '2026-01-01T00:00:00Z', source: 'external', rootfs: '/srv/r' };

const test = suite('a rootfs in use by a live container is not shifted to other ids');
test('another container on the same tree with other ids is refused, naming the one using it', async () => {
  const { message } = await rejects(refuseRootfsInUse([a], { id: 'b', rootfs: '/srv/r', uidMappings: Y, gidMappings: Y }), RefusedError, 'in use by container a');
  assert.match(message, 'for container b');
  await rejects(refuseRootfsInUse([a], { rootfs: '/srv/r', uidMappings: IDENTITY, gidMappings: IDENTITY }), RefusedError, 'its original owners');
});
test('the same ids, another tree, the container itself, or a container whose process is gone: no refusal', async () => {
  await refuseRootfsInUse([a], { id: 'b', rootfs: '/srv/r', uidMappings: X, gidMappings: X });
  await refuseRootfsInUse([a], { id: 'b', rootfs: '/srv/other', uidMappings: Y, gidMappings: Y });
  await refuseRootfsInUse([a], { id: 'a', rootfs: '/srv/r', uidMappings: Y, gidMappings: Y });
  await refuseRootfsInUse([{ ...a, pid: 2 ** 22 + 1 }], { id: 'b', rootfs: '/srv/r', uidMappings: Y, gidMappings: Y });
});
test.run();
