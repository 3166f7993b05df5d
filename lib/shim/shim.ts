// The runtime shim: at create and run, give the container a user namespace
// when the policy says so (read config.json, allocate a range, apply the
// spec modifiers, write config.json back atomically), then hand the
// original argv to the real runtime. Every other command passes through;
// delete also releases the container's range.

import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Config } from '../config/config';
import { HostError, InputError, isUsernsError, RefusedError } from '../errors';
import { readFileInside } from '../oci/input';
import { parseValidated } from '../oci/json';
import type { Logger } from '../log/logger';
import { podRole } from '../oci/pod';
import { requestedRange, shimVerdict } from '../oci/policy';
import { allocateRange, releaseContainer, type RangeEntry } from '../ranges/ranges';
import { extraFdCount, parseRuntimeArgs, type RuntimeArgs } from './args';
import { applyModifiers, systemdModifiers, userNamespaceModifiers, type OurHooks } from './spec-modifiers';
import { rootfsPath, specMappings, type Spec } from '../oci/spec';
import { toHost } from '../oci/idmap';
import { openPathToRootfs } from '../rootfs/access';
import { idsForTree } from '../rootfs/owners';
import { alreadyShifted, resolveRootfs } from '../shift/state';
import { replaceFileAtomic } from '../sys/atomic-file';
import { findPodSandbox, ownRangeInPodError, runtimeJoinCheck, sandboxUserNamespace } from './pod';
import { resolveRuntime, runRuntime } from './runtime-exec';
import { killArgv } from './stop-signal';

/** The hooks.d definitions' PATH, so the hook's `#!/usr/bin/env node` finds node the same way. */
export const HOOK_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Variables that point the hook at the same config and log as the shim. */
const PASSED_TO_HOOK = ['OCI_USERNS_CONFIG', 'OCI_USERNS_LOG_FILE', 'OCI_USERNS_LOG_LEVEL'];
const HOOK_TIMEOUTS = { createRuntimeTimeout: 120, poststopTimeout: 30 };

export interface ShimOptions {
  /** The runtime arguments, exactly as the engine gave them. */
  argv: readonly string[];
  config: Config;
  /** The installed oci-userns program, by its real path: the hooks it adds run it. */
  hookPath: string;
  env: NodeJS.ProcessEnv;
  cwd: string;
  logger: Logger;
  /** Where /proc is; tests point it elsewhere. */
  procRoot?: string;
  /** The front (bin/oci-userns-runtime) that handed this call over, if one did: never the real runtime either. */
  front?: string;
}

export interface ShimResult {
  /** The real runtime's exit status, which the shim exits with. */
  exitCode: number;
  /** Problems after the runtime ran that must not change its status (a range not released). */
  warnings: string[];
}

export function hookEnvironment(env: NodeJS.ProcessEnv): string[] {
  return [HOOK_PATH_ENV, ...PASSED_TO_HOOK.filter((k) => env[k]).map((k) => `${k}=${env[k]}`)];
}

function readSpecFile(path: string, maxBytes: number, containerId?: string): Spec {
  const text = readFileInside(dirname(path), basename(path), maxBytes, { containerId }).toString('utf8');
  return parseValidated<Spec>(text, 'config', path, { containerId, path });
}

/**
 * Before the runtime mounts anything: container root must reach the rootfs,
 * and own it already, because the runtime creates mount points (/etc/hosts,
 * /var/log/journal) inside it from the user namespace, before any hook runs.
 * Where it can, lib/rootfs/shim-rootfs.ts gives it ownership by an idmapped
 * mount (a directory rootfs: at a private mount point, returned as the
 * spec's new root.path; an overlay: rebuilt in place); else the chown
 * shift, and the createRuntime hook then finds it shifted and only checks.
 */
async function prepareRootfs(rootfs: string, entry: RangeEntry, id: string, opts: ShimOptions): Promise<string | undefined> {
  const { config, logger } = opts;
  const who = { uid: toHost(entry.uidMappings, 0)!, gid: toHost(entry.gidMappings, 0)! };
  if (config.shift.mode === 'never') {
    await openPathToRootfs(rootfs, who, { containerId: id, logger });
    return undefined;
  }
  // The hook's quick check first: a tree shifted before (a bundle run again) costs no shift-engine load, and is never idmapped.
  if (config.shift.mode === 'auto' && alreadyShifted(resolveRootfs(rootfs, id), { uid: entry.uidMappings, gid: entry.gidMappings }, config.stateDir)) {
    await openPathToRootfs(rootfs, who, { containerId: id, logger });
    logger.debug('rootfs already shifted', { containerId: id, rootfs });
    return undefined;
  }
  if (config.shift.method !== 'chown') {
    const { prepareShimRootfs } = await import('../rootfs/shim-rootfs');
    const given = await prepareShimRootfs({ rootfs, uidMappings: entry.uidMappings, gidMappings: entry.gidMappings, stateDir: config.stateDir, containerId: id, logger });
    if (given.route === 'directory') return given.rootPath;
    await openPathToRootfs(rootfs, who, { containerId: id, logger });
    if (given.route === 'overlay') return undefined;
    const ownership = { uid: entry.uidMappings, gid: entry.gidMappings };
    if (config.shift.method === 'idmap' && !alreadyShifted(resolveRootfs(rootfs, id), ownership, config.stateDir)) throw new HostError(`the rootfs ${rootfs} cannot be idmapped here (${given.reason})`, { containerId: id, path: rootfs, hint: 'set shift.method to auto (chown where idmap is refused) or chown' });
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
async function releaseRootfs(id: string, opts: ShimOptions): Promise<void> {
  const { releaseShimRootfs } = await import('../rootfs/shim-rootfs');
  await releaseShimRootfs({ stateDir: opts.config.stateDir, containerId: id, logger: opts.logger });
}

/**
 * The hooks the shim adds. The spec may run the same program already under
 * another name (hooks.d files name PREFIX/bin/oci-userns, a symlink to the
 * file the shim runs as), so those names are found by their real path and
 * the hook is not added twice.
 */
function ourHooks(spec: Spec, opts: ShimOptions): OurHooks {
  const paths = new Set(Object.values(spec.hooks ?? {}).flatMap((hooks) => (hooks ?? []).map((h) => h.path)));
  const aliases = [...paths].filter((path) => {
    try {
      return path !== opts.hookPath && realpathSync(path) === opts.hookPath;
    } catch {
      return false;
    }
  });
  return { path: opts.hookPath, aliases, env: hookEnvironment(opts.env), ...HOOK_TIMEOUTS };
}

/**
 * In a user namespace the engine made with mappings in the spec (containerd
 * 1.7 hands over a snapshot owned by host root), the same idmapped rootfs
 * as for the shim's own ranges; where that is not possible the hook shifts
 * it with chown as before. Returns the spec's new root.path for a
 * directory rootfs.
 */
async function idmapEngineRootfs(spec: Spec, args: RuntimeArgs, opts: ShimOptions): Promise<string | undefined> {
  const { config, logger } = opts;
  const rootfs = rootfsPath(spec, args.bundle!);
  const { uidMappings, gidMappings } = specMappings(spec);
  if (config.shift.mode === 'never' || config.shift.method === 'chown' || rootfs === undefined || args.containerId === undefined || uidMappings.length === 0 || gidMappings.length === 0) return undefined;
  const { prepareShimRootfs } = await import('../rootfs/shim-rootfs');
  const given = await prepareShimRootfs({ rootfs, uidMappings, gidMappings, stateDir: config.stateDir, containerId: args.containerId, logger });
  if (given.route === 'chown') logger.info('the rootfs is not idmapped; the hook shifts it with chown', { containerId: args.containerId, path: rootfs, reason: given.reason });
  return given.route === 'directory' ? given.rootPath : undefined;
}

/**
 * A systemd container in a user namespace the engine made (containerd 1.7
 * for a kubelet pod with hostUsers: false): what systemd needs there is
 * added; the mappings stay the engine's, and no range is allocated (the
 * hook records the engine's range).
 */
async function completeSystemdSpec(spec: Spec, specPath: string, args: RuntimeArgs, opts: ShimOptions): Promise<void> {
  const hooks = ourHooks(spec, opts);
  const changed = applyModifiers(spec, systemdModifiers(hooks));
  const rootPath = await idmapEngineRootfs(spec, args, opts);
  if (rootPath !== undefined) changed.root = { ...changed.root, path: rootPath };
  await replaceFileAtomic(specPath, `${JSON.stringify(changed, null, 2)}\n`, { containerId: args.containerId });
  opts.logger.info(`${args.command}: completed systemd container ${args.containerId} in the engine's user namespace`, { containerId: args.containerId, bundle: args.bundle });
}

export interface PreparedBundle {
  /** The range allocated for this container, when the shim allocated one. */
  allocated?: RangeEntry;
  /** What the runtime will not be able to do with it (lib/shim/pod.ts runtimeJoinCheck). */
  warnings: string[];
}

/** A range of the container's own from the pool, sized from the tree as `alloc --size auto` does: one block would leave owners past it unmapped. */
async function allocateOwnRange(spec: Spec, rootfs: string | undefined, id: string, opts: ShimOptions): Promise<RangeEntry> {
  const { config, logger } = opts;
  const requested = requestedRange(spec, config.pool.blockSize);
  const treeIds = rootfs !== undefined && config.shift.mode !== 'never' ? await idsForTree(rootfs) : undefined;
  const size = Math.max(requested.size ?? 0, treeIds !== undefined && treeIds > config.pool.blockSize ? treeIds : 0) || undefined;
  return allocateRange({ stateDir: config.stateDir, pool: config.pool, id, ...requested, ...(size !== undefined ? { size } : {}), ...(rootfs !== undefined ? { rootfs } : {}), source: 'shim', logger, procRoot: opts.procRoot });
}

/**
 * For create and run: gives the container a user namespace when the policy
 * says so: a new one with a range allocated, or, for an app container of a
 * pod whose sandbox the shim gave one, the sandbox's (lib/shim/pod.ts).
 * `runtime` is the real runtime's path.
 */
export async function prepareBundle(args: RuntimeArgs, opts: ShimOptions, runtime: string): Promise<PreparedBundle> {
  const { config, logger } = opts;
  const specPath = args.specPath!;
  const leftToRuntime = runtimeAnswersAlone(args);
  if (leftToRuntime !== undefined) {
    logger.debug(`${args.command}: left to the runtime (${leftToRuntime})`, { containerId: args.containerId, bundle: args.bundle });
    return { warnings: [] };
  }
  const spec = readSpecFile(specPath, config.limits.inputBytes, args.containerId);
  const verdict = shimVerdict(spec, config.runtime.policy, args.containerId);
  if (verdict.complete) {
    await completeSystemdSpec(spec, specPath, args, opts);
    return { warnings: [] };
  }
  if (!verdict.act) {
    logger.debug(`${args.command}: spec left as it is (${verdict.reason})`, { containerId: args.containerId, bundle: args.bundle });
    return { warnings: [] };
  }
  const id = args.containerId;
  if (id === undefined) {
    throw new InputError(`cannot tell the container id in '${opts.argv.join(' ')}'${args.unknown.length > 0 ? ` (options unknown to oci-userns: ${args.unknown.join(', ')})` : ''}`, {
      path: specPath,
      hint: 'write options with values as --option=value, or set io.oci-userns.userns=off for this container',
    });
  }
  const specRootfs = rootfsPath(spec, args.bundle!);
  const rootfs = specRootfs === undefined ? undefined : resolveRootfs(specRootfs, id);
  const role = podRole(spec);
  const sandbox = role?.kind === 'container' ? await findPodSandbox({ stateDir: config.stateDir, role, containerId: id, runtimeRoot: typeof args.global.root === 'string' ? args.global.root : undefined, procRoot: opts.procRoot }) : undefined;
  if (role?.kind === 'container' && sandbox === undefined) throw ownRangeInPodError(role, id);
  const entry = sandbox?.entry ?? (await allocateOwnRange(spec, rootfs, id, opts));
  const allocated = sandbox === undefined ? entry : undefined;
  let check: { refuse?: string; warn?: string };
  // Until config.json names the range, nothing uses it: give it back on any failure.
  try {
    const rootPath = rootfs !== undefined ? await prepareRootfs(rootfs, entry, id, opts) : undefined;
    const hooks = ourHooks(spec, opts);
    const userNamespacePath = sandbox === undefined ? undefined : sandboxUserNamespace(sandbox);
    const changed = applyModifiers(spec, userNamespaceModifiers({ uidMappings: entry.uidMappings, gidMappings: entry.gidMappings, userNamespacePath, hooks, systemd: verdict.systemd }));
    if (rootPath !== undefined) changed.root = { ...changed.root, path: rootPath };
    check = await runtimeJoinCheck({ spec: changed, runtime, stateDir: config.stateDir, env: opts.env, logger });
    if (check.refuse) throw new RefusedError(`container ${id} cannot start in the user namespace of its pod: ${check.refuse}`, { containerId: id, hint: 'set runtime.path in the config file to crun (or runc 1.3 or later)' });
    await replaceFileAtomic(specPath, `${JSON.stringify(changed, null, 2)}\n`, { containerId: id });
  } catch (error) {
    await releaseRootfs(id, opts);
    if (allocated) await releaseContainer({ stateDir: config.stateDir, id, logger });
    throw error;
  }
  const how = sandbox === undefined ? `gave container ${id} a user namespace` : `container ${id} joins the user namespace of its pod's sandbox ${sandbox.entry.id}`;
  logger.info(`${args.command}: ${how} (${verdict.reason})`, { containerId: id, bundle: args.bundle, uidMappings: entry.uidMappings, gidMappings: entry.gidMappings });
  const warnings = check.warn ? [`container ${id}: ${check.warn}`] : [];
  for (const warning of warnings) logger.warn(warning, { containerId: id });
  return { allocated, warnings };
}

/**
 * Why the runtime must see this create/run untouched: it prints help, or
 * it fails on its own before reading the spec (no bundle, no config.json,
 * not exactly one container id), and then it must say so in its own words
 * and exit status (runc: `JSON specification file config.json not found`,
 * exit 1). Undefined when the shim has a spec to decide on.
 */
function runtimeAnswersAlone(args: RuntimeArgs): string | undefined {
  if (args.options.help !== undefined) return 'help';
  if (!existsSync(args.specPath!)) return `${args.specPath} does not exist`;
  if (args.containerId === undefined && args.unknown.length === 0) return `${args.positionals.length} arguments where runc wants one container id`;
  return undefined;
}

/** Whether the container is gone once the runtime returned `exitCode`, so its range can go. */
function containerGone(args: RuntimeArgs, exitCode: number, allocated: boolean): boolean {
  switch (args.command) {
    case 'delete':
      // With crun's --regex the ids are not known here; the poststop hook releases them.
      return exitCode === 0 && args.options.regex === undefined;
    case 'create':
      return allocated && exitCode !== 0;
    case 'run':
      return allocated && args.options.keep === undefined && (exitCode !== 0 || args.options.detach === undefined);
    default:
      return false;
  }
}

export async function runShimCommand(opts: ShimOptions): Promise<ShimResult> {
  const args = parseRuntimeArgs(opts.argv, opts.cwd);
  const runtime = resolveRuntime(opts.config.runtime.path, opts.env, opts.front === undefined ? [opts.hookPath] : [opts.hookPath, opts.front], opts.cwd);
  const prepared = args.command === 'create' || args.command === 'run' ? await prepareBundle(args, opts, runtime) : { warnings: [] };
  const allocated = prepared.allocated;
  const release = async () => {
    await releaseRootfs(args.containerId!, opts);
    await releaseContainer({ stateDir: opts.config.stateDir, id: args.containerId!, logger: opts.logger });
  };
  let exitCode: number;
  try {
    const argv = args.command === 'kill' ? await killArgv({ runtime, argv: opts.argv, args }) : opts.argv;
    exitCode = await runRuntime({ path: runtime, argv, env: opts.env, extraFds: extraFdCount(args, opts.env) });
  } catch (error) {
    if (allocated) await release();
    throw error;
  }
  const warnings = [...prepared.warnings];
  if (args.containerId !== undefined && containerGone(args, exitCode, allocated !== undefined)) {
    try {
      await release();
    } catch (error) {
      if (!isUsernsError(error)) throw error;
      opts.logger.error(`the range of container ${args.containerId} was not released: ${error.message}`, { containerId: args.containerId });
      warnings.push(`the range of container ${args.containerId} was not released: ${error.message}`);
    }
  }
  return { exitCode, warnings };
}
