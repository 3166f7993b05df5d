// File capabilities as the kernel stores them in security.capability
// (struct vfs_cap_data / vfs_ns_cap_data, little endian): magic_etc holds the
// revision and the effective flag, then permitted/inheritable words, and in
// revision 3 the host uid of the root of the user namespace the caps are for
// (rootid). A v2 xattr applies in the initial namespace; a v3 xattr applies
// in a user namespace whose root is rootid. Pure.

import { InputError } from '../errors';

const REVISION_MASK = 0xff000000;
const FLAG_EFFECTIVE = 0x000001;
export const VFS_CAP_REVISION_1 = 0x01000000;
export const VFS_CAP_REVISION_2 = 0x02000000;
export const VFS_CAP_REVISION_3 = 0x03000000;

export interface FileCaps {
  effective: boolean;
  /** Permitted and inheritable sets as 64-bit masks (one 32-bit word for revision 1). */
  permitted: bigint;
  inheritable: bigint;
  /** Host uid of namespace root for revision 3; undefined for revisions 1 and 2. */
  rootid?: number;
}

export function decodeFileCaps(value: Uint8Array): FileCaps {
  const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (buf.length < 4) throw new InputError(`security.capability of ${buf.length} bytes is too short`);
  const magic = buf.readUInt32LE(0);
  const revision = (magic & REVISION_MASK) >>> 0;
  const effective = (magic & FLAG_EFFECTIVE) !== 0;
  const expected = revision === VFS_CAP_REVISION_1 ? 12 : revision === VFS_CAP_REVISION_2 ? 20 : revision === VFS_CAP_REVISION_3 ? 24 : -1;
  if (expected < 0) throw new InputError(`security.capability revision 0x${revision.toString(16)} is unknown`);
  if (buf.length !== expected) throw new InputError(`security.capability revision ${revision >>> 24} must be ${expected} bytes, got ${buf.length}`);
  const word = (i: number) => BigInt(buf.readUInt32LE(4 + i * 4));
  if (revision === VFS_CAP_REVISION_1) return { effective, permitted: word(0), inheritable: word(1) };
  const caps: FileCaps = { effective, permitted: word(0) | (word(2) << 32n), inheritable: word(1) | (word(3) << 32n) };
  if (revision === VFS_CAP_REVISION_3) caps.rootid = buf.readUInt32LE(20);
  return caps;
}

/** Encodes as revision 3 when rootid is set and not 0, else revision 2 (what the kernel itself writes for host root). */
export function encodeFileCaps(caps: FileCaps): Buffer {
  const v3 = caps.rootid !== undefined && caps.rootid !== 0;
  const buf = Buffer.alloc(v3 ? 24 : 20);
  buf.writeUInt32LE(((v3 ? VFS_CAP_REVISION_3 : VFS_CAP_REVISION_2) | (caps.effective ? FLAG_EFFECTIVE : 0)) >>> 0, 0);
  const low = (v: bigint) => Number(v & 0xffffffffn);
  const high = (v: bigint) => Number((v >> 32n) & 0xffffffffn);
  buf.writeUInt32LE(low(caps.permitted), 4);
  buf.writeUInt32LE(low(caps.inheritable), 8);
  buf.writeUInt32LE(high(caps.permitted), 12);
  buf.writeUInt32LE(high(caps.inheritable), 16);
  if (v3) buf.writeUInt32LE(caps.rootid!, 20);
  return buf;
}

/**
 * Rewrites caps for a tree moved to another range: the caps belonged to the
 * root of the old namespace (container id 0, or the container id of rootid),
 * and now belong to the host id of that same container user in the new one.
 * Returns undefined when the old owner cannot be mapped.
 */
export function shiftFileCaps(value: Uint8Array, rootHostIdOf: (oldRootid: number | undefined) => number | undefined): Buffer | undefined {
  const caps = decodeFileCaps(value);
  const rootid = rootHostIdOf(caps.rootid);
  if (rootid === undefined) return undefined;
  return encodeFileCaps({ ...caps, rootid });
}
