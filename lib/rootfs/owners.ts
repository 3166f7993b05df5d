// The highest uid and gid that own something in a rootfs, for
// `oci-userns alloc --size auto`: the container needs a range that maps
// them. Walks with the shift's walker (lib/sys/walk.ts): no symlink
// followed, no mount entered (like find -xdev, so a mounted /proc or a bind
// mount is not counted), and names that are not UTF-8 counted like others.

import { lstatSync } from 'node:fs';
import { errnoCode, InputError, systemError } from '../errors';
import { walkTree } from '../sys/walk';

export interface RootfsIds {
  highestUid: number;
  highestGid: number;
  /** Owner of the rootfs's top directory: not 0 when the tree was shifted already. */
  rootUid: number;
  rootGid: number;
  /** Inodes counted, the top directory included. */
  entries: number;
}

/** Owners of every inode of the tree at `rootfs`. InputError when it is not a directory; SystemError when the walk fails. */
export async function highestIds(rootfs: string): Promise<RootfsIds> {
  let top;
  try {
    top = lstatSync(rootfs);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw new InputError(`rootfs ${rootfs} does not exist`, { path: rootfs });
    throw systemError('cannot stat', rootfs, error);
  }
  if (!top.isDirectory()) throw new InputError(`rootfs ${rootfs} is not a directory`, { path: rootfs });
  const result: RootfsIds = { highestUid: top.uid, highestGid: top.gid, rootUid: top.uid, rootGid: top.gid, entries: 1 };
  walkTree(rootfs, {
    visit: (_path, st) => {
      result.entries++;
      if (st.uid > result.highestUid) result.highestUid = st.uid;
      if (st.gid > result.highestGid) result.highestGid = st.gid;
    },
    skip: () => {},
  });
  return result;
}

/**
 * Ids a container needs to map the owners of an unshifted tree (owned by
 * 0:0 at its top): the highest owner + 1, or undefined when the tree looks
 * shifted already (its owners are then host ids, not the image's). Walks
 * the tree only in that first case.
 */
export async function idsForTree(rootfs: string): Promise<number | undefined> {
  const top = lstatSync(rootfs);
  if (top.uid !== 0 || top.gid !== 0) return undefined;
  const ids = await highestIds(rootfs);
  return Math.max(ids.highestUid, ids.highestGid) + 1;
}
