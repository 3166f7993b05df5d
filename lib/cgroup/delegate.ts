// Finding a container's cgroup v2 directory and delegating it to the
// container's root, so systemd as PID 1 can create init.scope and a cgroup
// per unit. This is the "cgroup ownership" of the runtime spec
// (config-linux.md), which runc 1.1 does only with its systemd cgroup
// driver: chown the container's own cgroup directory and the files the
// kernel lists as delegatable, never the controller interface files, never
// a parent. Whether the spec allows it at all: lib/cgroup/spec-check.ts.

import { constants, promises as fs } from 'node:fs';
import { isAbsolute, join, normalize, posix } from 'node:path';
import { containerProcessGone, errnoCode, HostError, RefusedError, systemError } from '../errors';
import type { Logger } from '../log/logger';
import { cgroup2Mount, type Mount } from '../sys/mountinfo';

/** What the kernel lets a delegatee own when /sys/kernel/cgroup/delegate is missing (cgroup-v2.rst). */
export const FALLBACK_DELEGATE_FILES = ['cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control'];

export interface DelegateOptions {
  pid: number;
  /** Host ids that the container's process.user maps to. */
  uid: number;
  gid: number;
  containerId?: string;
  procRoot?: string;
  mountinfoPath?: string;
  delegateFile?: string;
  logger?: Logger;
}

export interface DelegateResult {
  /** The container's cgroup directory, as the hook sees it. */
  cgroupPath: string;
  /** Paths whose owner changed; empty when the runtime had delegated already (crun). */
  changed: string[];
  alreadyDelegated: boolean;
}

/** The cgroup v2 path of a process, from the `0::` line of /proc/<pid>/cgroup. */
export function unifiedCgroupPath(procCgroup: string): string | undefined {
  for (const line of procCgroup.split('\n')) {
    if (line.startsWith('0::')) return line.slice(3);
  }
  return undefined;
}

/**
 * Where a cgroup (as /proc/<pid>/cgroup names it) lies under the cgroup2
 * mount. Throws RefusedError for the root cgroup, for a path that escapes
 * the mount, and for a cgroup outside the mount's root.
 */
export function resolveCgroupDir(mount: Pick<Mount, 'root' | 'mountPoint'>, cgroup: string, containerId?: string): string {
  if (!isAbsolute(cgroup) || cgroup.split('/').includes('..') || cgroup.includes('\0')) {
    throw new RefusedError(`cgroup path '${cgroup}' is not a plain absolute path`, { containerId });
  }
  const path = normalize(cgroup);
  const root = mount.root === '/' ? '' : mount.root.replace(/\/$/, '');
  if (root && path !== root && !path.startsWith(`${root}/`)) {
    throw new RefusedError(`cgroup ${path} is outside the cgroup2 mount at ${mount.mountPoint} (its root is ${mount.root})`, { containerId });
  }
  const relative = path.slice(root.length).replace(/^\/+/, '').replace(/\/+$/, '');
  if (relative === '') {
    throw new RefusedError(`the container's cgroup is the root cgroup of ${mount.mountPoint}; refusing to delegate it`, {
      containerId,
      hint: 'the runtime must put the container in a cgroup of its own (linux.cgroupsPath)',
    });
  }
  return posix.join(mount.mountPoint, relative);
}

/** The files of a cgroup a delegatee may own: the kernel's list, else the documented minimum. */
export function parseDelegateFile(text: string | undefined): string[] {
  if (text === undefined) return FALLBACK_DELEGATE_FILES;
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.includes('/') && l !== '.' && l !== '..');
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw systemError('cannot read', path, error);
  }
}

const CHOWN_HINT = "the hook must run as root in the runtime's namespaces";

/**
 * Opens the cgroup directory without following a symlink anywhere on its
 * path: O_NOFOLLOW guards the last component, and the kernel's name for
 * what was opened (/proc/self/fd/N) must be the path asked for, so no
 * parent was a symlink either.
 */
async function openCgroupDir(dir: string, containerId?: string): Promise<fs.FileHandle> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (error) {
    // With O_DIRECTORY, a symlink fails as ENOTDIR rather than ELOOP.
    const isLink = ['ELOOP', 'ENOTDIR'].includes(errnoCode(error) ?? '') && (await fs.lstat(dir).then((s) => s.isSymbolicLink(), () => false));
    if (isLink) throw new RefusedError(`cgroup ${dir} is a symlink; refusing to delegate through it`, { containerId, path: dir });
    throw systemError('cannot open cgroup', dir, error, { containerId });
  }
  const real = await fs.readlink(`/proc/self/fd/${handle.fd}`).catch(async (error) => {
    await handle.close();
    throw systemError('cannot resolve cgroup', dir, error, { containerId, hint: '/proc must be mounted where the hook runs' });
  });
  if (real !== dir) {
    await handle.close();
    throw new RefusedError(`cgroup ${dir} resolves through a symlink to ${real}`, { containerId, path: dir });
  }
  return handle;
}

export async function delegateCgroup(opts: DelegateOptions): Promise<DelegateResult> {
  const { pid, uid, gid, containerId } = opts;
  const procRoot = opts.procRoot ?? '/proc';
  const mountinfoPath = opts.mountinfoPath ?? '/proc/self/mountinfo';
  if (uid === 0 || gid === 0) {
    throw new RefusedError(`container root maps to host ${uid === 0 ? 'uid' : 'gid'} 0; refusing to hand the cgroup to host root`, {
      containerId,
      hint: 'give the container a user namespace whose mappings do not include host id 0',
    });
  }
  const mountinfo = await fs.readFile(mountinfoPath, 'utf8').catch((error) => {
    throw systemError('cannot read', mountinfoPath, error, { containerId });
  });
  const mount = cgroup2Mount(mountinfo);
  if (!mount) {
    throw new HostError('no cgroup2 hierarchy is mounted (cgroup v1 only); delegation needs cgroup v2', {
      containerId,
      hint: 'boot with systemd.unified_cgroup_hierarchy=1, or mount cgroup2 (run `oci-userns doctor`)',
    });
  }
  const procCgroupPath = join(procRoot, String(pid), 'cgroup');
  let procCgroup: string;
  try {
    procCgroup = await fs.readFile(procCgroupPath, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ESRCH') {
      throw containerProcessGone(pid, containerId, error);
    }
    throw systemError('cannot read', procCgroupPath, error, { containerId });
  }
  const cgroup = unifiedCgroupPath(procCgroup);
  if (cgroup === undefined) {
    throw new HostError(`process ${pid} is in no cgroup v2 hierarchy (the runtime used cgroup v1)`, {
      containerId,
      hint: 'run the runtime where /sys/fs/cgroup is cgroup2 (see `oci-userns doctor`)',
    });
  }
  const dir = resolveCgroupDir(mount, cgroup, containerId);
  const names = parseDelegateFile(await readOptional(opts.delegateFile ?? '/sys/kernel/cgroup/delegate'));
  const changed: string[] = [];
  const handle = await openCgroupDir(dir, containerId);
  try {
    // Names resolved through the open directory: nothing can swap a parent in between.
    const pinned = `/proc/self/fd/${handle.fd}`;
    // Every file is looked at before anything is chowned, so a refusal changes nothing.
    const files: string[] = [];
    for (const name of names) {
      const path = join(dir, name);
      let file;
      try {
        file = await fs.lstat(join(pinned, name));
      } catch (error) {
        // Not every listed file exists: memory.* files only where the controller is enabled.
        if (errnoCode(error) === 'ENOENT') continue;
        throw systemError('cannot stat', path, error, { containerId });
      }
      if (file.isSymbolicLink()) throw new RefusedError(`${path} is a symlink; refusing to delegate through it`, { containerId, path });
      if (file.uid !== uid || file.gid !== gid) files.push(name);
    }
    const stat = await handle.stat();
    if (stat.uid !== uid || stat.gid !== gid) {
      await handle.chown(uid, gid).catch((error) => {
        throw systemError('cannot chown', dir, error, { containerId, hint: CHOWN_HINT });
      });
      changed.push(dir);
    }
    for (const name of files) {
      const path = join(dir, name);
      try {
        await fs.lchown(join(pinned, name), uid, gid);
      } catch (error) {
        throw systemError('cannot chown', path, error, { containerId, hint: CHOWN_HINT });
      }
      changed.push(path);
    }
  } finally {
    await handle.close();
  }
  opts.logger?.debug('cgroup delegated', { containerId, cgroupPath: dir, uid, gid, changed });
  return { cgroupPath: dir, changed, alreadyDelegated: changed.length === 0 };
}
