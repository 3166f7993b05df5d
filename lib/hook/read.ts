// Read: what a hook run decides from. Parses and validates the state the
// runtime wrote on stdin (read by the entry, hooks/run.ts) and the bundle's
// config.json, then, only for a container that needs setting up, the few
// facts the plan needs: the container's mappings (from its process when it
// joined a user namespace by path) and the rootfs, resolved once, with the
// O(1) "already shifted?" answer. Nothing here changes anything.

import { promises as fs } from 'node:fs';
import type { Config } from '../config/config';
import { containerProcessGone, errnoCode, InputError, systemError } from '../errors';
import type { Logger } from '../log/logger';
import { parseProcIdMap } from '../oci/idmap';
import { readSpec, rootfsPath, specMappings, type Spec } from '../oci/spec';
import { parseState, type ContainerState } from '../oci/state';
import { readRawTreeAccess } from '../rootfs/access';
import { readMounts } from '../rootfs/tree';
import { alreadyShifted, notOriginalOwners, resolveRootfs } from '../shift/state';
import { applicability, type ContainerMappings, type HookFacts, type HookStage } from './plan';

export interface ReadOptions {
  stage: HookStage;
  /** The state as the runtime wrote it on stdin. */
  stateText: string;
  config: Pick<Config, 'limits' | 'shift' | 'stateDir'>;
  logger: Logger;
  /** Where /proc is; tests point it elsewhere. */
  procRoot?: string;
  /**
   * The container's spec, when the caller has it already: the shim serving
   * the createRuntime hook of a container it prepared (lib/shim/hook-fifo.ts),
   * whose config.json is the caller's again. Else config.json is read.
   */
  spec?: Spec;
}

export interface HookRead {
  state: ContainerState;
  spec: Spec;
  /** Absent when the container needs no setting up at this stage. */
  facts?: HookFacts;
}

/** The mappings of config.json, or the process's (/proc/PID/uid_map, gid_map) when config.json has none. */
async function containerMappings(spec: Spec, pid: number, procRoot: string, containerId: string): Promise<ContainerMappings> {
  const fromSpec = specMappings(spec);
  if (fromSpec.uidMappings.length > 0 && fromSpec.gidMappings.length > 0) return fromSpec;
  const read = async (name: string) => {
    const path = `${procRoot}/${pid}/${name}`;
    try {
      return parseProcIdMap(await fs.readFile(path, 'utf8'), path);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') throw containerProcessGone(pid, containerId, error);
      if (error instanceof InputError) throw error;
      throw systemError('cannot read', path, error, { containerId });
    }
  };
  return { uidMappings: await read('uid_map'), gidMappings: await read('gid_map') };
}

/**
 * Reads the input and the facts. Throws InputError for a state or
 * config.json that is malformed or names what does not exist (the bundle,
 * the rootfs, the container's process), SystemError when reading fails.
 */
export async function readHook(opts: ReadOptions): Promise<HookRead> {
  const { config, logger } = opts;
  logger.debug('state received', { state: opts.stateText });
  const state = parseState(opts.stateText);
  const spec = opts.spec ?? (await readSpec(state.bundle, config.limits.inputBytes, state.id));
  logger.debug('config.json read', { containerId: state.id, spec });
  const applies = applicability(opts.stage, state, spec);
  if (applies.kind !== 'setup') return { state, spec };
  const mappings = await containerMappings(spec, applies.pid, opts.procRoot ?? '/proc', state.id);
  const rootfs = config.shift.mode === 'never' ? undefined : rootfsPath(spec, state.bundle);
  if (rootfs === undefined) return { state, spec, facts: { mappings } };
  const path = resolveRootfs(rootfs, state.id);
  const shifted = alreadyShifted(path, { uid: mappings.uidMappings, gid: mappings.gidMappings }, config.stateDir);
  if (config.shift.method === 'chown') return { state, spec, facts: { mappings, rootfs: { path, shifted } } };
  const mounts = readMounts();
  const idmappedMount = mounts.some((m) => m.mountPoint === path && m.mountOptions.includes('idmapped'));
  const shiftedAway = shifted || idmappedMount ? undefined : notOriginalOwners(path, config.stateDir);
  const access = await readRawTreeAccess(path, mappings.uidMappings, { containerId: state.id, mounts });
  return { state, spec, facts: { mappings, rootfs: { path, shifted, ...(idmappedMount ? { idmappedMount } : {}), ...(shiftedAway !== undefined ? { shiftedAway } : {}), ...access } } };
}
