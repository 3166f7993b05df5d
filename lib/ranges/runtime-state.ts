// What the OCI runtimes keep about their containers, read from their state
// directories: runc ROOT/ID/state.json, crun ROOT/ID/status. podman and
// CRI-O run rootful containers through these runtimes with their default
// roots (/run/runc, /run/crun); containerd gives runc one root per
// namespace (/run/containerd/runc/NAMESPACE), which can be listed too.

import { promises as fs } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { errnoCode, systemError } from '../errors';

export const DEFAULT_RUNTIME_ROOTS = ['/run/runc', '/run/crun'];

/**
 * The state root of the runtime at `runtimePath` for a call: its global
 * --root, else the default of runc (/run/runc) or, for a file named crun*,
 * crun (/run/crun), as root runs them.
 */
export function runtimeRootFor(runtimePath: string, globalRoot: string | true | undefined): string {
  if (typeof globalRoot === 'string') return globalRoot;
  return /^crun/.test(runtimePath.slice(runtimePath.lastIndexOf('/') + 1)) ? '/run/crun' : '/run/runc';
}

export interface RuntimeContainer {
  id: string;
  root: string;
  /** The container's init process, when the runtime recorded it. */
  pid?: number;
  /** Its start time in clock ticks since boot, when recorded. */
  pidStart?: number;
  /** Its rootfs as the runtime resolved it (runc config.rootfs; crun rootfs against bundle), when recorded. */
  rootfs?: string;
}

const STATE_FILES = ['state.json', 'status'];

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw systemError('cannot read', path, error);
  }
}

function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** An absolute rootfs: runc's config.rootfs is one; crun's rootfs is as config.json gave it, relative to its bundle. */
function stateRootfs(value: Record<string, unknown>): string | undefined {
  const config = value.config as Record<string, unknown> | null | undefined;
  const rootfs = typeof config === 'object' && config !== null ? config.rootfs : value.rootfs;
  if (typeof rootfs !== 'string' || rootfs === '') return undefined;
  if (isAbsolute(rootfs)) return rootfs;
  return typeof value.bundle === 'string' && isAbsolute(value.bundle) ? resolve(value.bundle, rootfs) : undefined;
}

/** runc's state.json names the init process init_process_pid/init_process_start; crun's status, pid/process-start-time. */
function parseRuntimeState(text: string): Pick<RuntimeContainer, 'pid' | 'pidStart' | 'rootfs'> {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return {};
  }
  if (value === null || typeof value !== 'object') return {};
  const rootfs = stateRootfs(value);
  return {
    pid: positiveInteger(value.init_process_pid ?? value.pid),
    pidStart: positiveInteger(value.init_process_start ?? value['process-start-time']),
    ...(rootfs !== undefined ? { rootfs } : {}),
  };
}

/** The container with this id in the first root that has it, or undefined when no runtime knows it. */
export async function findRuntimeContainer(roots: readonly string[], id: string): Promise<RuntimeContainer | undefined> {
  if (id.includes('/') || id === '.' || id === '..') return undefined;
  for (const root of roots) {
    for (const file of STATE_FILES) {
      const text = await readIfExists(join(root, id, file));
      if (text !== undefined) return { id, root, ...parseRuntimeState(text) };
    }
  }
  return undefined;
}

/** Every container the runtimes under these roots know of. */
export async function listRuntimeContainers(roots: readonly string[]): Promise<RuntimeContainer[]> {
  const found: RuntimeContainer[] = [];
  for (const root of roots) {
    let ids: string[];
    try {
      ids = await fs.readdir(root);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') continue;
      throw systemError('cannot list', root, error);
    }
    for (const id of ids) {
      const container = await findRuntimeContainer([root], id);
      if (container) found.push(container);
    }
  }
  return found;
}
