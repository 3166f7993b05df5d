// The highest uid and gid that own something in a rootfs, for
// `oci-userns alloc --size auto` and the shim: the container needs a range
// that maps them. Walks with the shift's walker (lib/sys/walk.ts): no
// symlink followed, no mount entered (like find -xdev, so a mounted /proc or
// a bind mount is not counted), and names that are not UTF-8 counted like
// others.
//
// An overlay rootfs (containerd's snapshots, containers/storage's layers)
// is measured layer by layer, and each committed lower layer once: the
// engines never change one (they make a new one), so a layer of their
// stores known by its directory's path, device, inode and birth time is not
// walked again, and every
// create from the same image walks only its own upper directory, not the
// image (7,900 inodes of a Debian image: about 45 ms). Its measure is kept
// in STATEDIR/layer-owners/. A file that a whiteout hides in the merged tree
// still counts: a larger range, never a smaller one.

import { lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, InputError, systemError } from '../errors';
import { writeFileAtomic } from '../sys/atomic-file';
import { parseMountinfo, visibleMounts } from '../sys/mountinfo';
import { pathHash } from '../sys/path-key';
import { walkTree } from '../sys/walk';
import { overlayLayout } from './overlay';

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

/** What a lower layer's measure is kept with: the layer it is of. */
interface LayerRecord {
  path: string;
  dev: string;
  ino: string;
  birthNs: string;
  highestUid: number;
  highestGid: number;
}

/**
 * Where the engines keep committed layers (real paths): containers/storage's
 * overlay driver `.../overlay/ID/diff`, containerd's overlayfs snapshotter
 * `.../snapshots/N/fs`. Any other lower directory (podman `--rootfs DIR:O`,
 * whose rootfs "is assumed to be managed externally", a hand-made overlay)
 * may change in place, so it is walked every time.
 */
const COMMITTED_LAYER = /\/overlay\/[^/]+\/diff$|\/snapshots\/[0-9]+\/fs$/;

/** A layer's directory, by its real path: containers/storage names its layers in lowerdir by symlinks (overlay/l/ID). */
function layerDir(path: string): string {
  try {
    return realpathSync(path);
  } catch (error) {
    throw systemError('cannot resolve the overlay layer', path, error);
  }
}

/** A lower layer's highest owners: from STATEDIR/layer-owners when this very layer was measured, else walked (and kept when the filesystem tells its birth time). */
async function layerIds(lower: string, stateDir: string): Promise<{ highestUid: number; highestGid: number }> {
  const layer = layerDir(lower);
  let st;
  try {
    st = lstatSync(layer, { bigint: true });
  } catch (error) {
    throw systemError('cannot stat the overlay layer', layer, error);
  }
  const id = { path: layer, dev: st.dev.toString(), ino: st.ino.toString(), birthNs: st.birthtimeNs.toString() };
  const file = join(stateDir, 'layer-owners', `${pathHash(layer)}.json`);
  // Only a layer an engine's store committed never changes; without a birth time a layer made again could have the old one's inode.
  const keep = COMMITTED_LAYER.test(layer) && id.birthNs !== '0';
  if (keep) {
    try {
      const record = JSON.parse(readFileSync(file, 'utf8')) as LayerRecord;
      if (record.path === id.path && record.dev === id.dev && record.ino === id.ino && record.birthNs === id.birthNs) return record;
    } catch {
      // not measured yet, or a record cut short: measured now
    }
  }
  const ids = await highestIds(layer);
  if (keep) {
    try {
      mkdirSync(join(stateDir, 'layer-owners'), { recursive: true, mode: 0o700 });
      const record: LayerRecord = { ...id, highestUid: ids.highestUid, highestGid: ids.highestGid };
      writeFileAtomic(file, `${JSON.stringify(record)}\n`, { mode: 0o600, durable: false });
    } catch {
      // a measure not kept is only walked again next time
    }
  }
  return ids;
}

/** Whether a kept measure is of the directory now at its path (same device, inode and birth time). */
function measureHolds(record: LayerRecord): boolean {
  const st = lstatSync(record.path, { bigint: true, throwIfNoEntry: false });
  return st !== undefined && st.dev.toString() === record.dev && st.ino.toString() === record.ino && st.birthtimeNs.toString() === record.birthNs;
}

/**
 * Drops the measures in STATEDIR/layer-owners of layers removed or made
 * again since (`oci-userns gc`): a measure is never read again once its
 * layer is gone. Returns how many it dropped; a record it cannot read is
 * dropped too (it is only measured again). Throws SystemError when the
 * directory cannot be listed.
 */
export function pruneLayerMeasures(stateDir: string): number {
  const dir = join(stateDir, 'layer-owners');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return 0;
    throw systemError('cannot list', dir, error);
  }
  let dropped = 0;
  for (const name of names) {
    const file = join(dir, name);
    let holds = false;
    try {
      holds = measureHolds(JSON.parse(readFileSync(file, 'utf8')) as LayerRecord);
    } catch {
      // cut short or not ours: dropped like a measure of a layer gone
    }
    if (holds) continue;
    rmSync(file, { force: true });
    dropped += 1;
  }
  return dropped;
}

/**
 * Ids a container needs to map the owners of an unshifted tree (owned by
 * 0:0 at its top): the highest owner + 1, or undefined when the tree looks
 * shifted already (its owners are then host ids, not the image's). Walks
 * the tree only in that first case; with `stateDir`, an overlay's lower
 * layers once each (see the top of this file). `mountinfoPath`: tests.
 */
export async function idsForTree(rootfs: string, opts: { stateDir?: string; mountinfoPath?: string } = {}): Promise<number | undefined> {
  const top = lstatSync(rootfs);
  if (top.uid !== 0 || top.gid !== 0) return undefined;
  const mount = opts.stateDir === undefined ? undefined : visibleMounts(parseMountinfo(readFileSync(opts.mountinfoPath ?? '/proc/self/mountinfo', 'utf8'))).find((m) => m.mountPoint === rootfs);
  const layout = mount?.fsType === 'overlay' ? overlayLayout(mount) : undefined;
  if (layout !== undefined && !('unsupported' in layout)) {
    const layers: Array<{ highestUid: number; highestGid: number }> = [await highestIds(layerDir(layout.upperdir))];
    for (const lower of layout.lowerdirs) layers.push(await layerIds(lower, opts.stateDir!));
    return Math.max(...layers.flatMap((ids) => [ids.highestUid, ids.highestGid])) + 1;
  }
  const ids = await highestIds(rootfs);
  return Math.max(ids.highestUid, ids.highestGid) + 1;
}
