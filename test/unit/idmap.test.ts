import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { composeShift, hostRangesOverlap, parseIdMap, toContainer, toHost, validateIdMap } from '../../lib/oci/idmap';
import { InputError } from '../../lib/errors';

const parse = suite('parseIdMap reads C:H:S extents');
parse('single and multiple extents, sorted by container id', () => {
  assert.equal(parseIdMap('0:100000:65536'), [{ containerID: 0, hostID: 100000, size: 65536 }]);
  assert.equal(parseIdMap('1:200001:10, 0:200000:1'), [
    { containerID: 0, hostID: 200000, size: 1 },
    { containerID: 1, hostID: 200001, size: 10 },
  ]);
});
parse('rejects malformed text with the offending part', () => {
  for (const bad of ['', '0:1', 'a:b:c', '0:1:2:3', '0:-1:5']) {
    assert.throws(() => parseIdMap(bad), (e: unknown) => e instanceof InputError);
  }
  assert.throws(() => parseIdMap('0:1:x'), /'0:1:x' is not CONTAINERID:HOSTID:SIZE/);
});
parse('rejects zero-size and overlapping extents', () => {
  assert.throws(() => parseIdMap('0:1000:0'), /size 0/);
  assert.throws(() => parseIdMap('0:1000:10,5:5000:10'), /overlap on the container side/);
  assert.throws(() => parseIdMap('0:1000:10,10:1005:10'), /overlap on the host side/);
  assert.throws(() => validateIdMap([{ containerID: 0, hostID: 4294967290, size: 10 }]), /largest id/);
});
parse.run();

const apply = suite('mapping ids both ways');
apply('toHost and toContainer across extents', () => {
  const map = parseIdMap('0:100000:1000,1000:500000:1000');
  assert.is(toHost(map, 0), 100000);
  assert.is(toHost(map, 999), 100999);
  assert.is(toHost(map, 1000), 500000);
  assert.is(toHost(map, 2000), undefined);
  assert.is(toContainer(map, 500001), 1001);
  assert.is(toContainer(map, 0), undefined);
});
apply('composeShift moves a tree from one range to another', () => {
  const shift = composeShift(parseIdMap('0:100000:65536'), parseIdMap('0:300000:65536'));
  assert.is(shift(100000), 300000);
  assert.is(shift(100033), 300033);
  assert.is(shift(0), undefined);
});
apply('hostRangesOverlap', () => {
  assert.ok(hostRangesOverlap(parseIdMap('0:100000:10'), parseIdMap('0:100009:10')));
  assert.not.ok(hostRangesOverlap(parseIdMap('0:100000:10'), parseIdMap('0:100010:10')));
});
apply.run();
