// Which tree of which filesystem a rootfs path is, and every place of the
// mount namespace that shows that tree. A path is one name among several:
// a bind mount (`mount --bind`), an idmapped clone (the shim's private
// mount, lib/rootfs/shim-rootfs.ts) or a mount of the same filesystem
// elsewhere shows the same inodes. So the rootfs-in-use check compares
// trees, not path strings (README "The ownership shift", issue 14 #3), and
// the idmap safety rule looks at every place the raw tree shows (README
// "ID-mapped rootfs"). Facts come from /proc/self/mountinfo (proc(5)):
// field 3 (major:minor) names the filesystem, field 4 (root) the directory
// of it a mount shows. Hard links are not seen here (one inode, several
// trees): the README leaves them to the operator.

import { readFileSync } from 'node:fs';
import { systemError } from '../errors';
import { parseMountinfo, visibleMounts, type Mount } from '../sys/mountinfo';

/** A tree as the kernel knows it: the filesystem (`major:minor`) and the directory inside it (`/` its root). */
export interface TreeId {
  device: string;
  path: string;
}

/** `path` relative to `dir` ('' for `dir` itself), or undefined when it is not at or below it. Both absolute. */
function below(path: string, dir: string): string | undefined {
  if (path === dir) return '';
  if (dir === '/') return path.slice(1);
  return path.startsWith(`${dir}/`) ? path.slice(dir.length + 1) : undefined;
}

const joinPath = (dir: string, rest: string) => (rest === '' ? dir : dir === '/' ? `/${rest}` : `${dir}/${rest}`);

/**
 * The tree at `realPath` (a real path, no symlinks) among `mounts` (the
 * visible ones, lib/sys/mountinfo.ts visibleMounts): the mount with the
 * longest mount point above it gives the device, its root plus the rest of
 * the path gives the path inside the filesystem. Pure. An idmapped or
 * plain bind of a tree resolves to the tree itself. Undefined when no
 * mount covers the path (a mountinfo without `/`).
 */
export function treeOf(mounts: readonly Mount[], realPath: string): TreeId | undefined {
  let best: { mount: Mount; rest: string } | undefined;
  for (const mount of mounts) {
    const rest = below(realPath, mount.mountPoint);
    if (rest !== undefined && (best === undefined || mount.mountPoint.length >= best.mount.mountPoint.length)) best = { mount, rest };
  }
  return best && { device: best.mount.device, path: joinPath(best.mount.root, best.rest) };
}

/** The registry's form of a TreeId: `major:minor:path`. */
export const treeKey = (tree: TreeId) => `${tree.device}:${tree.path}`;

/**
 * Every mount point path where the tree, or a part of it, shows with its
 * on-disk owners: for each visible mount of the same device whose root is
 * at or above the tree, the mount point plus the rest of the tree's path;
 * for each whose root lies inside the tree, its mount point. Idmapped
 * mounts are left out: they show the files under another mapping, so a
 * host-root file of the raw tree is not host root's there. Pure; sorted,
 * no duplicates.
 */
export function treeExposures(mounts: readonly Mount[], tree: TreeId): string[] {
  const out = new Set<string>();
  for (const mount of mounts) {
    if (mount.device !== tree.device || mount.mountOptions.includes('idmapped')) continue;
    const rest = below(tree.path, mount.root);
    if (rest !== undefined) out.add(joinPath(mount.mountPoint, rest));
    else if (below(mount.root, tree.path) !== undefined) out.add(mount.mountPoint);
  }
  return [...out].sort();
}

/** The visible mounts of this process's mount namespace. SystemError when mountinfo cannot be read. */
export function readMounts(mountinfoPath = '/proc/self/mountinfo'): Mount[] {
  try {
    return visibleMounts(parseMountinfo(readFileSync(mountinfoPath, 'utf8')));
  } catch (error) {
    throw systemError('cannot read', mountinfoPath, error);
  }
}

/** treeKey(treeOf(...)) of a real path in this mount namespace: what the registry records and compares. */
export function readTreeKey(realPath: string, mountinfoPath?: string): string | undefined {
  const tree = treeOf(readMounts(mountinfoPath), realPath);
  return tree && treeKey(tree);
}
