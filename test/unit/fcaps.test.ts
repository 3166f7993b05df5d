import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeFileCaps, encodeFileCaps, shiftFileCaps } from '../../lib/shift/fcaps';
import { capsRoot } from '../../lib/shift/step';

// `setcap cap_net_raw=ep` writes this v2 value (cap_net_raw is bit 13).
const NET_RAW_V2 = Buffer.from('0100000200200000000000000000000000000000', 'hex');

const codec = suite('VFS capability xattr codec');
codec('decodes a v2 value with the effective flag', () => {
  assert.equal(decodeFileCaps(NET_RAW_V2), { effective: true, permitted: 1n << 13n, inheritable: 0n });
});
codec('encodes v3 with rootid, v2 for host root, both round-trip', () => {
  const v3 = encodeFileCaps({ effective: true, permitted: (1n << 13n) | (1n << 40n), inheritable: 1n, rootid: 100000 });
  assert.is(v3.length, 24);
  assert.is(v3.readUInt32LE(0), 0x03000001);
  assert.equal(decodeFileCaps(v3), { effective: true, permitted: (1n << 13n) | (1n << 40n), inheritable: 1n, rootid: 100000 });
  assert.equal(encodeFileCaps(decodeFileCaps(NET_RAW_V2)).toString('hex'), NET_RAW_V2.toString('hex'));
});
codec('rejects unknown revisions and wrong lengths', () => {
  assert.throws(() => decodeFileCaps(Buffer.from('05000000', 'hex')), /unknown/);
  assert.throws(() => decodeFileCaps(NET_RAW_V2.subarray(0, 16)), /must be 20 bytes/);
});
codec.run();

const shift = suite('shiftFileCaps gives the caps to the new host id of their owner');
shift('v2 (container root) becomes v3 with rootid, and back to v2 for host root', () => {
  const v3 = shiftFileCaps(NET_RAW_V2, (old) => (old === undefined ? 300000 : undefined))!;
  assert.is(decodeFileCaps(v3).rootid, 300000);
  const back = shiftFileCaps(v3, (old) => (old === 300000 ? 0 : undefined))!;
  assert.equal(back.toString('hex'), NET_RAW_V2.toString('hex'));
  assert.is(shiftFileCaps(v3, () => undefined), undefined);
});
shift.run();

const rule = suite('whom a v3 rootid belongs to after a step (step.ts capsRoot; README, "File capabilities")');
const X = { source: (h: number) => (h >= 100000 && h < 165536 ? h - 100000 : undefined), target: (c: number) => 300000 + c };
const first = { source: (h: number) => h, target: (c: number) => 100000 + c };
rule('on a tree not shifted yet, a v3 rootid (a build namespace of another machine) goes to container root, as v2 does', () => {
  const v3build = encodeFileCaps({ effective: true, permitted: 1n << 13n, inheritable: 0n, rootid: 1000 });
  assert.is(decodeFileCaps(shiftFileCaps(v3build, capsRoot(first, true))!).rootid, 100000);
  assert.is(decodeFileCaps(shiftFileCaps(NET_RAW_V2, capsRoot(first, true))!).rootid, 100000);
});
rule('in a shifted tree, rootid stays the same container user (root, or the root of a namespace nested in the container)', () => {
  const nested = encodeFileCaps({ effective: true, permitted: 1n << 13n, inheritable: 0n, rootid: 101000 });
  assert.is(decodeFileCaps(shiftFileCaps(nested, capsRoot(X, false))!).rootid, 301000);
  const root = encodeFileCaps({ effective: true, permitted: 1n << 13n, inheritable: 0n, rootid: 100000 });
  assert.is(decodeFileCaps(shiftFileCaps(root, capsRoot(X, false))!).rootid, 300000);
  assert.is(shiftFileCaps(encodeFileCaps({ effective: true, permitted: 1n, inheritable: 0n, rootid: 5 }), capsRoot(X, false)), undefined, 'a rootid outside the old range is unmapped');
});
rule.run();
