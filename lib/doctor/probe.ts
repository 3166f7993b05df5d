// Gathers the facts `oci-userns doctor` decides on (lib/doctor/doctor.ts): reads
// /proc, /sys, /etc and the hooks folder, and asks runc and crun for their
// versions. Every path is read below `root`, so tests can point it at a
// fake tree.

import { constants, promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import type { Config } from '../config/config';
import { findIdmapHelper, probeIdmap } from '../rootfs/idmap-mount';
import { probeOverlayIdmap } from '../rootfs/overlay-probe';
import { cgroup2MountPoint } from './doctor';
import { HOOK_FILE_NAMES, type ConfigFacts, type HookFileFacts, type HostFacts, type IdmapFacts, type PathFacts, type ProgramFacts, type RuntimeFacts } from './facts';

export interface ProbeOptions {
  /** Prefix of every host path read ("/" on a real host). */
  root: string;
  config: Config;
  configFacts: ConfigFacts;
  hooksDir: string;
  /** First line of `NAME --version`, or undefined when NAME cannot run. */
  runtimeVersion?: (name: RuntimeFacts['name']) => Promise<string | undefined>;
  /** Whether a directory rootfs at `path` can be idmapped; the helper's probe by default. */
  idmapProbe?: (path: string) => Promise<IdmapFacts>;
}

/** The helper's probe (no change to any mount); a probe that cannot run (not root) says why. */
async function defaultIdmapProbe(path: string): Promise<IdmapFacts> {
  const helper = findIdmapHelper();
  if (!helper) return { path, supported: false };
  try {
    const probed = await probeIdmap({ helper, path });
    if (!probed.supported) return { path, helper, supported: false, reason: probed.reason };
    const overlay = await probeOverlayIdmap({ dir: path, helper });
    return { path, helper, supported: true, overlay: overlay.supported ? { supported: true } : { supported: false, reason: overlay.reason } };
  } catch (error) {
    return { path, helper, supported: false, reason: error instanceof Error ? error.message : String(error) };
  }
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const stat = await fs.stat(path);
    if (!stat.isFile()) return false;
    await fs.access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function pathFacts(root: string, path: string): Promise<PathFacts> {
  const onHost = join(root, path);
  try {
    const stat = await fs.lstat(onHost);
    let writable = true;
    try {
      await fs.access(onHost, constants.W_OK);
    } catch {
      writable = false;
    }
    return { path, exists: true, isSymlink: stat.isSymbolicLink(), isDirectory: stat.isDirectory(), uid: stat.uid, mode: stat.mode, writable };
  } catch {
    return { path, exists: false };
  }
}

async function programFacts(root: string, path: string): Promise<ProgramFacts> {
  const onHost = join(root, path);
  const executable = await isExecutable(onHost);
  if (!executable) return { path, executable };
  let head = '';
  try {
    const handle = await fs.open(onHost, 'r');
    try {
      const buffer = Buffer.alloc(256);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      head = buffer.subarray(0, bytesRead).toString('latin1');
    } finally {
      await handle.close();
    }
  } catch {
    return { path, executable: false };
  }
  if (!head.startsWith('#!')) return { path, executable };
  const interpreter = head.slice(2).split('\n', 1)[0]!.trim();
  const binary = interpreter.split(/\s+/, 1)[0]!;
  return { path, executable, interpreter, interpreterExecutable: binary.startsWith('/') && (await isExecutable(join(root, binary))) };
}

async function defaultRuntimeVersion(name: RuntimeFacts['name']): Promise<string | undefined> {
  try {
    const { stdout } = await execa(name, ['--version'], { timeout: 5000 });
    return stdout.split('\n', 1)[0];
  } catch {
    return undefined;
  }
}

export async function probeHost(options: ProbeOptions): Promise<HostFacts> {
  const { root, config } = options;
  const at = (path: string) => join(root, path);
  const mountinfo = (await readText(at('/proc/self/mountinfo'))) ?? '';
  const cgroup2 = cgroup2MountPoint(mountinfo);

  const files: HookFileFacts[] = await Promise.all(HOOK_FILE_NAMES.map(async (name) => ({ name, text: await readText(join(at(options.hooksDir), name)) })));
  const programPaths = new Set<string>();
  for (const file of files) {
    try {
      const path = JSON.parse(file.text ?? 'null')?.hook?.path;
      if (typeof path === 'string' && path.startsWith('/')) programPaths.add(path);
    } catch {
      // lib/doctor reports the file as invalid JSON.
    }
  }
  const programs: Record<string, ProgramFacts> = {};
  for (const path of programPaths) programs[path] = await programFacts(root, path);

  const runtimeVersion = options.runtimeVersion ?? defaultRuntimeVersion;
  const runtimes: RuntimeFacts[] = await Promise.all((['runc', 'crun'] as const).map(async (name) => ({ name, version: await runtimeVersion(name) })));

  return {
    mountinfo,
    cgroup2Controllers: cgroup2 === undefined ? undefined : await readText(join(at(cgroup2), 'cgroup.controllers')),
    delegate: await readText(at('/sys/kernel/cgroup/delegate')),
    maxUserNamespaces: await readText(at('/proc/sys/user/max_user_namespaces')),
    unprivilegedUsernsClone: await readText(at('/proc/sys/kernel/unprivileged_userns_clone')),
    pool: { user: config.pool.user, blockSize: config.pool.blockSize, subuidFile: config.pool.subuidFile, subgidFile: config.pool.subgidFile },
    subuid: await readText(at(config.pool.subuidFile)),
    subgid: await readText(at(config.pool.subgidFile)),
    passwd: await readText(at('/etc/passwd')),
    runtimes,
    hooks: { dir: options.hooksDir, files, programs },
    stateDir: await pathFacts(root, config.stateDir),
    logFile: await pathFacts(root, config.logFile),
    logDir: await pathFacts(root, dirname(config.logFile)),
    config: options.configFacts,
    // Engines keep their rootfs next to our state (/var/lib), so its filesystem is the one to ask about.
    idmap: await (options.idmapProbe ?? defaultIdmapProbe)(at(dirname(config.stateDir))),
  };
}

/** The default hooks folder that holds our files, for a doctor run without --hooks-dir. */
export async function findHooksDir(root: string, candidates: readonly string[]): Promise<string> {
  for (const dir of candidates) {
    if ((await readText(join(root, dir, HOOK_FILE_NAMES[0]))) !== undefined) return dir;
  }
  return candidates[0]!;
}
