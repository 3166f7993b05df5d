// POSIX ACLs as the kernel stores them in the system.posix_acl_access and
// system.posix_acl_default xattrs: a 4-byte version (2) followed by 8-byte
// entries {tag u16, perm u16, id u32}, little endian. Only ACL_USER and
// ACL_GROUP entries carry an id; shifting a tree rewrites those. Pure.

import { InputError } from '../errors';

export const ACL_XATTR_VERSION = 2;
export const ACL_USER_OBJ = 0x01;
export const ACL_USER = 0x02;
export const ACL_GROUP_OBJ = 0x04;
export const ACL_GROUP = 0x08;
export const ACL_MASK = 0x10;
export const ACL_OTHER = 0x20;
const UNDEFINED_ID = 0xffffffff;

export interface AclEntry {
  tag: number;
  perm: number;
  /** Set only for ACL_USER and ACL_GROUP entries. */
  id?: number;
}

export function decodeAcl(value: Uint8Array): AclEntry[] {
  const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (buf.length < 4 || (buf.length - 4) % 8 !== 0) throw new InputError(`ACL xattr of ${buf.length} bytes is not a version header plus 8-byte entries`);
  const version = buf.readUInt32LE(0);
  if (version !== ACL_XATTR_VERSION) throw new InputError(`ACL xattr version ${version} is not the supported version ${ACL_XATTR_VERSION}`);
  const entries: AclEntry[] = [];
  for (let off = 4; off < buf.length; off += 8) {
    const tag = buf.readUInt16LE(off);
    const perm = buf.readUInt16LE(off + 2);
    const id = buf.readUInt32LE(off + 4);
    entries.push(tag === ACL_USER || tag === ACL_GROUP ? { tag, perm, id } : { tag, perm });
  }
  return entries;
}

export function encodeAcl(entries: readonly AclEntry[]): Buffer {
  const buf = Buffer.alloc(4 + entries.length * 8);
  buf.writeUInt32LE(ACL_XATTR_VERSION, 0);
  entries.forEach((e, i) => {
    const off = 4 + i * 8;
    buf.writeUInt16LE(e.tag, off);
    buf.writeUInt16LE(e.perm, off + 2);
    buf.writeUInt32LE(e.tag === ACL_USER || e.tag === ACL_GROUP ? e.id! : UNDEFINED_ID, off + 4);
  });
  return buf;
}

/** The ids a mapping function returns for a named entry; undefined means the id cannot be mapped. */
export type IdFn = (id: number) => number | undefined;

export interface AclShift {
  value: Buffer;
  changed: boolean;
  /** Ids of named entries the functions could not map (left unchanged). */
  unmapped: number[];
}

/** Maps the ids of the named user and group entries; other entries keep their bytes. */
export function shiftAcl(value: Uint8Array, uid: IdFn, gid: IdFn): AclShift {
  const unmapped: number[] = [];
  let changed = false;
  const entries = decodeAcl(value).map((e) => {
    if (e.id === undefined) return e;
    const next = (e.tag === ACL_USER ? uid : gid)(e.id);
    if (next === undefined) {
      unmapped.push(e.id);
      return e;
    }
    if (next !== e.id) changed = true;
    return { ...e, id: next };
  });
  return { value: changed ? encodeAcl(entries) : Buffer.from(value), changed, unmapped };
}
