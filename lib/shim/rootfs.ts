// The shim's part in giving the rootfs to container root before the runtime
// runs (an idmapped mount through lib/rootfs/shim-rootfs.ts, else the chown
// shift), and taking an idmapped one down when the container is gone. Moved
// out of shim.ts as it was, to keep that module under 300 lines.

import { HostError } from '../errors';
import { stopwatch } from '../log/stopwatch';
import { toHost } from '../oci/idmap';
import { rootfsPath, specMappings, type Spec } from '../oci/spec';
import { claimRootfsOwners, type RangeEntry } from '../ranges/ranges';
import { openPathToRootfs } from '../rootfs/access';
import { alreadyShifted, resolveRootfs } from '../shift/state';
import type { RuntimeArgs } from './args';
import type { ShimOptions } from './shim';

type RootfsOptions = Pick<ShimOptions, 'config' | 'logger'>;

/**
 * Before the runtime mounts anything: container root must reach the rootfs,
 * and own it already, because the runtime creates mount points (/etc/hosts,
 * /var/log/journal) inside it from the user namespace, before any hook runs.
 * Where it can, lib/rootfs/shim-rootfs.ts gives it ownership by an idmapped
 * mount (a directory rootfs: at a private mount point, returned as the
 * spec's new root.path; an overlay: rebuilt in place); else the chown
 * shift, and the createRuntime hook then finds it shifted and only checks.
 */
export async function prepareRootfs(rootfs: string, entry: RangeEntry, id: string, opts: RootfsOptions): Promise<string | undefined> {
  const { config, logger } = opts;
  const who = { uid: toHost(entry.uidMappings, 0)!, gid: toHost(entry.gidMappings, 0)! };
  if (config.shift.mode === 'never') {
    await openPathToRootfs(rootfs, who, { containerId: id, logger });
    return undefined;
  }
  // The range was allocated for an idmapped rootfs (rootfsIdmapped), which other idmapped containers may share: any other route owns the raw tree, so it is claimed before its owners change.
  const claim = () => claimRootfsOwners({ stateDir: config.stateDir, id, logger });
  const ownership = { uid: entry.uidMappings, gid: entry.gidMappings };
  // The hook's quick check first: a tree shifted before (a bundle run again) costs no shift-engine load, and is never idmapped.
  if (config.shift.mode === 'auto' && alreadyShifted(resolveRootfs(rootfs, id), ownership, config.stateDir)) {
    await claim();
    await openPathToRootfs(rootfs, who, { containerId: id, logger });
    logger.debug('rootfs already shifted', { containerId: id, rootfs });
    return undefined;
  }
  if (config.shift.method !== 'chown') {
    const { applyShimRootfs, chooseShimRootfs } = await import('../rootfs/shim-rootfs');
    const elapsed = stopwatch();
    const shimRootfs = { rootfs, uidMappings: entry.uidMappings, gidMappings: entry.gidMappings, stateDir: config.stateDir, containerId: id, logger };
    // Under shift.method idmap a tree the shim cannot idmap fails the container before any claim: it will never own the raw tree.
    const refuseChown = (reason: string) => {
      if (config.shift.method === 'idmap' && !alreadyShifted(resolveRootfs(rootfs, id), ownership, config.stateDir)) throw new HostError(`the rootfs ${rootfs} cannot be idmapped here (${reason})`, { containerId: id, path: rootfs, hint: 'set shift.method to auto (chown where idmap is refused) or chown' });
    };
    const choice = await chooseShimRootfs(shimRootfs);
    if (choice.route.route === 'chown') refuseChown(choice.route.reason);
    if (choice.route.route !== 'directory') await claim();
    const given = await applyShimRootfs(choice, shimRootfs, elapsed);
    if (given.route === 'directory') return given.rootPath;
    if (given.route === 'chown') refuseChown(given.reason);
    // Claimed above for any other route; a directory route the kernel refused comes to own the tree only now.
    if (choice.route.route === 'directory') await claim();
    await openPathToRootfs(rootfs, who, { containerId: id, logger });
    if (given.route === 'overlay') return undefined;
    logger.info('the rootfs is not idmapped; shifting it with chown instead', { containerId: id, path: rootfs, reason: given.reason });
  } else {
    await openPathToRootfs(rootfs, who, { containerId: id, logger });
  }
  // Loaded only here, as in the hook: pass-through commands must not pay for the shift engine.
  const { ensureShifted } = await import('../shift/shift');
  const result = await ensureShifted({ rootfs, uidMap: entry.uidMappings, gidMap: entry.gidMappings, mode: config.shift.mode, unmapped: config.shift.unmapped, stateDir: config.stateDir, containerId: id, logger });
  logger.info(`rootfs ${result.action}`, { containerId: id, rootfs, inodes: result.inodes, changed: result.changed, ms: result.durationMs });
  return undefined;
}

/** Unmounts the private idmapped rootfs of a container that is gone (lib/rootfs/shim-rootfs.ts), if it had one. */
export async function releaseRootfs(id: string, opts: RootfsOptions): Promise<void> {
  const { releaseShimRootfs } = await import('../rootfs/shim-rootfs');
  await releaseShimRootfs({ stateDir: opts.config.stateDir, containerId: id, logger: opts.logger });
}

/**
 * In a user namespace the engine made with mappings in the spec (containerd
 * 1.7 hands over a snapshot owned by host root), the same idmapped rootfs
 * as for the shim's own ranges; where that is not possible the hook shifts
 * it with chown as before. Returns the spec's new root.path for a
 * directory rootfs.
 */
export async function idmapEngineRootfs(spec: Spec, args: RuntimeArgs, opts: RootfsOptions): Promise<string | undefined> {
  const { config, logger } = opts;
  const rootfs = rootfsPath(spec, args.bundle!);
  const { uidMappings, gidMappings } = specMappings(spec);
  if (config.shift.mode === 'never' || config.shift.method === 'chown' || rootfs === undefined || args.containerId === undefined || uidMappings.length === 0 || gidMappings.length === 0) return undefined;
  const { prepareShimRootfs } = await import('../rootfs/shim-rootfs');
  const given = await prepareShimRootfs({ rootfs, uidMappings, gidMappings, stateDir: config.stateDir, containerId: args.containerId, logger });
  if (given.route === 'chown') logger.info('the rootfs is not idmapped; the hook shifts it with chown', { containerId: args.containerId, path: rootfs, reason: given.reason });
  return given.route === 'directory' ? given.rootPath : undefined;
}
