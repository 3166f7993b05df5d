import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { blockAlignedSize, chooseRange, intersectRanges, sizeForHighestId, stableHash, type RangesInUse } from '../../lib/ranges/allocator';
import { HostError, InputError } from '../../lib/errors';
import type { IdRange, Pool } from '../../lib/ranges/subid';
import { rejects } from '../helpers/assert-error';

const B = 65536;
// The first 6 bytes of sha256('web'), as `node -e` prints them.
const HASH_OF_WEB = 82868574808879;
const pool = (uids: IdRange[], gids: IdRange[] = uids): Pool => ({ user: 'containers', uids, gids, subuidFile: '/etc/subuid', subgidFile: '/etc/subgid' });
const at = (id: string, uid: number, gid = uid, size = B): RangesInUse => ({
  id,
  uidMappings: [{ containerID: 0, hostID: uid, size }],
  gidMappings: [{ containerID: 0, hostID: gid, size }],
});
const hostUid = (c: { uidMappings: readonly { hostID: number }[] }) => c.uidMappings[0]!.hostID;

const sizes = suite('sizes');
sizes('rounded up to whole blocks', () => {
  assert.is(blockAlignedSize(undefined, B), B);
  assert.is(blockAlignedSize(1, B), B);
  assert.is(blockAlignedSize(B + 1, B), 2 * B);
  assert.is(sizeForHighestId(65534, B), B);
  assert.is(sizeForHighestId(65535, B), B);
  assert.is(sizeForHighestId(65536, B), 2 * B);
  assert.is(sizeForHighestId(0, B), B);
});
sizes('bad sizes are input errors', () => {
  for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => blockAlignedSize(bad, B), (e: unknown) => e instanceof InputError);
  assert.throws(() => blockAlignedSize(1, 0), /block size/);
});
sizes.run();

const choose = suite('chooseRange');
const big = pool([{ start: 2147483647, count: 2147483648 }]);
choose('blocks start on a block boundary inside the pool, same offset for uid and gid', () => {
  const c = chooseRange({ pool: big, blockSize: B, key: 'web', inUse: [] });
  const start = hostUid(c);
  assert.is(start % B, 0);
  assert.ok(start >= 2147483648 && start + B <= 4294967295);
  assert.equal(c.uidMappings, [{ containerID: 0, hostID: start, size: B }]);
  assert.equal(c.gidMappings, c.uidMappings);
  assert.ok(c.preferred);
});
choose('the preferred block is stable for a name and differs between names', () => {
  const a1 = hostUid(chooseRange({ pool: big, blockSize: B, key: 'web', inUse: [] }));
  const a2 = hostUid(chooseRange({ pool: big, blockSize: B, key: 'web', inUse: [at('other', 2147483648)] }));
  const b = hostUid(chooseRange({ pool: big, blockSize: B, key: 'db', inUse: [] }));
  assert.is(a1, a2);
  assert.is.not(a1, b);
  // Pinned: the same name must get the same block after upgrades and on every host.
  assert.is(stableHash('web'), HASH_OF_WEB);
});
choose('a taken preferred block falls back to the first free one', () => {
  const small = pool([{ start: 0, count: 4 * B }]);
  const preferred = hostUid(chooseRange({ pool: small, blockSize: B, key: 'x', inUse: [] }));
  const taken = new Set([preferred, 0]);
  const c = chooseRange({ pool: small, blockSize: B, key: 'x', inUse: [...taken].map((start) => at(`held-${start}`, start)) });
  assert.not.ok(c.preferred);
  assert.is(hostUid(c), [0, B, 2 * B, 3 * B].find((start) => !taken.has(start)));
});
choose('an unaligned pool start skips to the first boundary', () => {
  const c = chooseRange({ pool: pool([{ start: 100000, count: 100000 }]), blockSize: B, key: 'x', inUse: [] });
  assert.is(hostUid(c), 131072);
});
choose('bigger sizes span several blocks and avoid ranges in use, including partial ones', () => {
  const p = pool([{ start: 0, count: 8 * B }]);
  const inUse = [at('odd', B + 5, B + 5, 10)];
  const c = chooseRange({ pool: p, blockSize: B, size: 3 * B, key: 'k', inUse });
  const start = hostUid(c);
  assert.is(c.uidMappings[0]!.size, 3 * B);
  assert.ok(start + 3 * B <= 8 * B);
  assert.ok(start >= 2 * B || start + 3 * B <= B + 5, `${start} overlaps the range in use`);
});
choose('a gid used by someone else moves both to a block free on both sides', () => {
  const p = pool([{ start: 0, count: 2 * B }]);
  const c = chooseRange({ pool: p, blockSize: B, key: 'k', inUse: [at('g', B, 0)] });
  // uid 0 and gid B are taken by 'g': no block is free on both sides, so uid and gid differ.
  assert.is(hostUid(c), 0);
  assert.is(c.gidMappings[0]!.hostID, B);
});
choose('different pools: the same offset where both allow it, else separate offsets', () => {
  const same = chooseRange({ pool: pool([{ start: 0, count: 4 * B }], [{ start: 2 * B, count: 4 * B }]), blockSize: B, key: 'k', inUse: [] });
  assert.is(hostUid(same), same.gidMappings[0]!.hostID);
  assert.ok(hostUid(same) >= 2 * B && hostUid(same) < 4 * B);
  const apart = chooseRange({ pool: pool([{ start: 0, count: B }], [{ start: 5 * B, count: B }]), blockSize: B, key: 'k', inUse: [] });
  assert.is(hostUid(apart), 0);
  assert.is(apart.gidMappings[0]!.hostID, 5 * B);
});
choose('several pool ranges are all used', () => {
  const p = pool([
    { start: 0, count: B },
    { start: 10 * B, count: B },
  ]);
  const taken = [at('a', 0)];
  assert.is(hostUid(chooseRange({ pool: p, blockSize: B, key: 'z', inUse: taken })), 10 * B);
});
choose('exhaustion names the pool, its files and what is in use', async () => {
  const p = pool([{ start: 0, count: 2 * B }]);
  // 'far' holds ids outside the pool (the host-wide scan brings such holders): it is not named.
  const { message } = await rejects(() => chooseRange({ pool: p, blockSize: B, key: 'k', inUse: [at('a', 0), at('far', 9 * B), at('b', B)] }), HostError);
  assert.match(message, /pool 'containers' has no free block of 65536 ids/);
  assert.match(message, /uids 0-131071 from \/etc\/subuid/);
  assert.match(message, /in use by 2 containers: a \(uids 0-65535\), b \(uids 65536-131071\)/);
  assert.match(message, /oci-userns gc/);
});
choose('a size larger than any pool range is exhausted too', () => {
  assert.throws(() => chooseRange({ pool: pool([{ start: 0, count: 2 * B }]), blockSize: B, size: 3 * B, key: 'k', inUse: [] }), /nothing is in use/);
});
choose('allocating one by one fills the pool without overlap', () => {
  const p = pool([{ start: 0, count: 20 * B }]);
  const inUse: RangesInUse[] = [];
  for (let i = 0; i < 20; i++) {
    const c = chooseRange({ pool: p, blockSize: B, key: `c${i}`, inUse });
    inUse.push({ id: `c${i}`, ...c });
  }
  assert.equal(new Set(inUse.map(hostUid)).size, 20);
  assert.throws(() => chooseRange({ pool: p, blockSize: B, key: 'one-more', inUse }), (e: unknown) => e instanceof HostError);
});
choose.run();

const intersect = suite('intersectRanges');
intersect('keeps only ids in both', () => {
  assert.equal(intersectRanges([{ start: 0, count: 10 }, { start: 20, count: 10 }], [{ start: 5, count: 20 }]), [
    { start: 5, count: 5 },
    { start: 20, count: 5 },
  ]);
});
intersect.run();
