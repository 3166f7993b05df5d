// The highest uid and gid that own something in a rootfs, for
// `oci-userns alloc --size auto`: the container needs a range that maps
// them. Walks without following symlinks and stays on the rootfs's own
// filesystem (like find -xdev), so a mounted /proc or a bind mount is not
// counted.

import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, InputError, systemError } from '../errors';

export interface RootfsIds {
  highestUid: number;
  highestGid: number;
  /** Owner of the rootfs's top directory: not 0 when the tree was shifted already. */
  rootUid: number;
  rootGid: number;
  entries: number;
}

export async function highestIds(rootfs: string): Promise<RootfsIds> {
  let top;
  try {
    top = await fs.lstat(rootfs, { bigint: false });
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw new InputError(`rootfs ${rootfs} does not exist`, { path: rootfs });
    throw systemError('cannot stat', rootfs, error);
  }
  if (!top.isDirectory()) throw new InputError(`rootfs ${rootfs} is not a directory`, { path: rootfs });
  const result: RootfsIds = { highestUid: top.uid, highestGid: top.gid, rootUid: top.uid, rootGid: top.gid, entries: 1 };
  const pending = [rootfs];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (error) {
      throw systemError('cannot read directory', dir, error);
    }
    for (const name of names) {
      const path = join(dir, name);
      let st;
      try {
        st = await fs.lstat(path);
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') continue; // removed while we walked
        throw systemError('cannot stat', path, error);
      }
      result.entries++;
      if (st.uid > result.highestUid) result.highestUid = st.uid;
      if (st.gid > result.highestGid) result.highestGid = st.gid;
      if (st.isDirectory() && st.dev === top.dev) pending.push(path);
    }
  }
  return result;
}
