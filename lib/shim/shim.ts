// The runtime shim: at create and run, give the container a user namespace
// when the policy says so (read config.json, allocate a range, apply the
// spec modifiers, lend the runtime the container's spec in config.json:
// bundle-spec.ts), serve its createRuntime hook (hook-fifo.ts), then hand
// the original argv to the real runtime. Every other command passes
// through; the end of a container it prepared (run ending, delete) is its
// own (prepared.ts): the range released, a pod's shift record dropped.
import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Config } from '../config/config';
import { InputError, isUsernsError, RefusedError } from '../errors';
import { readFileInside } from '../oci/input';
import { parseValidated } from '../oci/json';
import type { Logger } from '../log/logger';
import { podRole } from '../oci/pod';
import { requestedRange, shimVerdict, SOURCE_ANNOTATION } from '../oci/policy';
import { allocateRange, releaseContainer, type RangeEntry } from '../ranges/ranges';
import { extraFdCount, parseRuntimeArgs, type RuntimeArgs } from './args';
import { applyModifiers, runsOurCreateRuntimeHook, systemdModifiers, userNamespaceModifiers, type OurHooks } from './spec-modifiers';
import { rootfsPath, type Spec } from '../oci/spec';
import { idsForTree } from '../rootfs/owners';
import { resolveRootfs } from '../shift/state';
import { deletedSince, isRegexDelete, runtimeIds } from './delete-regex';
import { runtimeAlone } from './runtime-alone';
import { containerGone, forgetPrepared, preparedDir, preparedRecord, recordPrepared } from './prepared';
import { fifoHook, openHookFifos, serveCreateRuntime, type HookFifos } from './hook-fifo';
import { idmapEngineRootfs, prepareRootfs, releaseRootfs } from './rootfs';
import { hookHasRead, leaseBundleSpec, type BundleLease } from './bundle-spec';
import { findPodSandbox, ownRangeInPodError, runtimeJoinCheck, sandboxUserNamespace } from './pod';
import { resolveRuntime, runRuntime } from './runtime-exec';
import { killArgv } from './stop-signal';

/** The hooks.d definitions' PATH, so the hook's `#!/usr/bin/env node` finds node the same way. */
export const HOOK_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Variables that point the hook at the same config and log as the shim. */
const PASSED_TO_HOOK = ['OCI_USERNS_CONFIG', 'OCI_USERNS_LOG_FILE', 'OCI_USERNS_LOG_LEVEL'];
const HOOK_TIMEOUTS = { createRuntimeTimeout: 120 };

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
  /** Told the path the call took, for the code cache (lib/sys/code-cache.ts): 'runtime COMMAND', with ' prepared' when the shim prepared the container. */
  notePath?: (path: string) => void;
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
 * A systemd container in a user namespace the engine made (containerd 1.7
 * for a kubelet pod with hostUsers: false): what systemd needs there is
 * added; the mappings stay the engine's, and no range is allocated (the
 * hook records the engine's range).
 */
async function completeSystemdSpec(spec: Spec, lease: BundleLease, args: RuntimeArgs, opts: ShimOptions): Promise<void> {
  const hooks = ourHooks(spec, opts);
  const changed = applyModifiers(spec, systemdModifiers(hooks));
  const rootPath = await idmapEngineRootfs(spec, args, opts);
  if (rootPath !== undefined) changed.root = { ...changed.root, path: rootPath };
  await lease.lend(`${JSON.stringify(changed, null, 2)}\n`, args.containerId);
  opts.logger.info(`${args.command}: completed systemd container ${args.containerId} in the engine's user namespace`, { containerId: args.containerId, bundle: args.bundle });
}

export interface PreparedBundle {
  /** The range allocated for this container, when the shim allocated one. */
  allocated?: RangeEntry;
  /** What the runtime will not be able to do with it (lib/shim/pod.ts runtimeJoinCheck). */
  warnings: string[];
  /**
   * The bundle's config.json, lent to the runtime with the container's spec
   * until the hook has read it (bundle-spec.ts). Set when the shim prepared
   * the container: its end (release, a pod's shift record) is then the
   * shim's (prepared.ts), not a poststop hook's.
   */
  lease?: BundleLease;
  /** The createRuntime hook the shim serves, with the spec it gave the container (hook-fifo.ts). */
  hook?: { fifos: HookFifos; spec: Spec };
}


/** A range of the container's own from the pool, sized from the tree as `alloc --size auto` does: one block would leave owners past it unmapped. */
async function allocateOwnRange(spec: Spec, rootfs: string | undefined, id: string, opts: ShimOptions): Promise<RangeEntry> {
  const { config, logger } = opts;
  const requested = requestedRange(spec, config.pool.blockSize);
  const treeIds = rootfs !== undefined && config.shift.mode !== 'never' ? await idsForTree(rootfs, { stateDir: config.stateDir }) : undefined;
  const size = Math.max(requested.size ?? 0, treeIds !== undefined && treeIds > config.pool.blockSize ? treeIds : 0) || undefined;
  // Meant for an idmapped rootfs unless the config rules it out; lib/shim/rootfs.ts claims the raw tree if it comes to another route.
  const rootfsIdmapped = config.shift.mode !== 'never' && config.shift.method !== 'chown';
  return allocateRange({ stateDir: config.stateDir, pool: config.pool, id, ...requested, ...(size !== undefined ? { size } : {}), ...(rootfs !== undefined ? { rootfs, rootfsIdmapped } : {}), source: 'shim', logger, procRoot: opts.procRoot });
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
  const leftToRuntime = await runtimeAlone(args, runtime);
  if (leftToRuntime !== undefined) {
    logger.debug(`${args.command}: left to the runtime (${leftToRuntime})`, { containerId: args.containerId, bundle: args.bundle });
    return { warnings: [] };
  }
  const read = () => readFileInside(dirname(specPath), basename(specPath), config.limits.inputBytes, { containerId: args.containerId });
  const parse = (bytes: Buffer) => parseValidated<Spec>(bytes.toString('utf8'), 'config', specPath, { containerId: args.containerId, path: specPath });
  // A first look without the lock, so that a spec left alone costs no state directory; a spec we lent to another container is ours to look at again under the lock.
  const firstBytes = read();
  const first = parse(firstBytes);
  const firstVerdict = shimVerdict(first, config.runtime.policy, args.containerId);
  if (!firstVerdict.act && !firstVerdict.complete && first.annotations?.[SOURCE_ANNOTATION] !== 'shim') {
    logger.debug(`${args.command}: spec left as it is (${firstVerdict.reason})`, { containerId: args.containerId, bundle: args.bundle });
    return { warnings: [] };
  }
  const lease = await leaseBundleSpec({ specPath, stateDir: config.stateDir, logger, read });
  try {
    // The same bytes under the lock (no other create lent the file meanwhile) need no second parse.
    const spec = lease.original.equals(firstBytes) ? first : parse(lease.original);
    const prepared = await prepareLeased({ args, opts, runtime, spec, lease });
    if (prepared.lease === undefined) await lease.giveBack();
    return prepared;
  } catch (error) {
    await lease.giveBack();
    throw error;
  }
}

/** prepareBundle's work on the caller's spec, read under the lease; returns the lease when it lent config.json. */
async function prepareLeased(leased: { args: RuntimeArgs; opts: ShimOptions; runtime: string; spec: Spec; lease: BundleLease }): Promise<PreparedBundle> {
  const { args, opts, runtime, spec, lease } = leased;
  const { config, logger } = opts;
  const specPath = args.specPath!;
  const verdict = shimVerdict(spec, config.runtime.policy, args.containerId);
  if (verdict.complete) {
    await completeSystemdSpec(spec, lease, args, opts);
    if (args.containerId !== undefined) recordPrepared(config.stateDir, args.containerId, preparedRecord(spec, args.bundle!, config));
    return { warnings: [], lease };
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
  // The runtime has no container with this id (runtimeHasContainer): what an earlier create of it left (a shim killed during it) is nobody's.
  if (existsSync(preparedDir(config.stateDir, id))) {
    await releaseRootfs(id, opts);
    forgetPrepared(config.stateDir, id);
    logger.info('removed what an earlier create of this id left (a shim killed during it)', { containerId: id });
  }
  const dir = recordPrepared(config.stateDir, id, preparedRecord(spec, args.bundle!, config));
  const hooks = ourHooks(spec, opts);
  // The shim serves the createRuntime hook, unless a hooks.d file runs the program's (podman, CRI-O): then that one stays. mkfifo runs while the range is allocated.
  const opening = runsOurCreateRuntimeHook(spec, hooks) ? undefined : openHookFifos(dir);
  let entry: RangeEntry;
  let allocated: RangeEntry | undefined;
  let check: { refuse?: string; warn?: string };
  let fifos: HookFifos | undefined;
  let changed: Spec;
  // Until config.json names the range, nothing uses it: give it back on any failure.
  try {
    entry = sandbox?.entry ?? (await allocateOwnRange(spec, rootfs, id, opts));
    allocated = sandbox === undefined ? entry : undefined;
    const rootPath = rootfs !== undefined ? await prepareRootfs(rootfs, entry, id, opts) : undefined;
    fifos = await opening;
    if (fifos) hooks.served = fifoHook({ dir, shimPid: process.pid, env: hooks.env, timeout: HOOK_TIMEOUTS.createRuntimeTimeout });
    const userNamespacePath = sandbox === undefined ? undefined : sandboxUserNamespace(sandbox);
    changed = applyModifiers(spec, userNamespaceModifiers({ uidMappings: entry.uidMappings, gidMappings: entry.gidMappings, userNamespacePath, hooks, systemd: verdict.systemd }));
    if (rootPath !== undefined) changed.root = { ...changed.root, path: rootPath };
    check = await runtimeJoinCheck({ spec: changed, runtime, stateDir: config.stateDir, env: opts.env, logger });
    if (check.refuse) throw new RefusedError(`container ${id} cannot start in the user namespace of its pod: ${check.refuse}`, { containerId: id, hint: 'set runtime.path in the config file to crun (or runc 1.3 or later)' });
    await lease.lend(`${JSON.stringify(changed, null, 2)}\n`, id);
  } catch (error) {
    (fifos ?? (await opening?.catch(() => undefined)))?.close();
    await releaseRootfs(id, opts);
    forgetPrepared(config.stateDir, id);
    if (allocated) await releaseContainer({ stateDir: config.stateDir, id, logger });
    throw error;
  }
  const how = sandbox === undefined ? `gave container ${id} a user namespace` : `container ${id} joins the user namespace of its pod's sandbox ${sandbox.entry.id}`;
  logger.info(`${args.command}: ${how} (${verdict.reason})`, { containerId: id, bundle: args.bundle, uidMappings: entry.uidMappings, gidMappings: entry.gidMappings });
  const warnings = check.warn ? [`container ${id}: ${check.warn}`] : [];
  for (const warning of warnings) logger.warn(warning, { containerId: id });
  return { allocated, warnings, lease, ...(fifos ? { hook: { fifos, spec: changed } } : {}) };
}

/** Whether the container is gone once the runtime returned `exitCode`, so its range can go; `prepared`: the shim prepared it in this call. */
function goneAfter(args: RuntimeArgs, exitCode: number, prepared: boolean): boolean {
  switch (args.command) {
    case 'delete':
      // crun's --regex: lib/shim/delete-regex.ts tells which containers went.
      return exitCode === 0 && args.options.regex === undefined;
    case 'create':
      return prepared && exitCode !== 0;
    case 'run':
      return prepared && args.options.keep === undefined && (exitCode !== 0 || args.options.detach === undefined);
    default:
      return false;
  }
}

export async function runShimCommand(opts: ShimOptions): Promise<ShimResult> {
  const args = parseRuntimeArgs(opts.argv, opts.cwd);
  const runtime = resolveRuntime(opts.config.runtime.path, opts.env, opts.front === undefined ? [opts.hookPath] : [opts.hookPath, opts.front], opts.cwd);
  const prepared: PreparedBundle = args.command === 'create' || args.command === 'run' ? await prepareBundle(args, opts, runtime) : { warnings: [] };
  const gone = async (id = args.containerId!) => {
    await releaseRootfs(id, opts);
    return containerGone({ stateDir: opts.config.stateDir, id, logger: opts.logger });
  };
  const before = isRegexDelete(args) ? await runtimeIds(args, runtime, opts.logger) : undefined;
  const argv = args.command === 'kill' ? await killArgv({ runtime, argv: opts.argv, args }) : opts.argv;
  const running = runRuntime({ path: runtime, argv, env: opts.env, extraFds: extraFdCount(args, opts.env) });
  const ended = running.then(() => undefined, () => undefined);
  const { hook, lease } = prepared;
  if (hook) void ended.then(() => hook.fifos.close());
  const served = hook?.fifos.serve((stateText) => serveCreateRuntime(stateText, { spec: hook.spec, config: opts.config, logger: opts.logger, procRoot: opts.procRoot }), opts.config.limits.inputBytes);
  // The caller's config.json comes back once our hook has been served or has read the container's spec (the runtime read it before), or the runtime has ended.
  const givenBack = lease && (served ?? hookHasRead({ stateDir: opts.config.stateDir, containerId: args.containerId!, stop: ended })).then(() => lease.giveBack());
  let exitCode: number;
  try {
    exitCode = await running;
  } catch (error) {
    await givenBack?.catch(() => undefined);
    if (lease) await gone();
    throw error;
  }
  const warnings = [...prepared.warnings];
  try {
    await givenBack;
  } catch (error) {
    if (!isUsernsError(error)) throw error;
    opts.logger.error(`the caller's config.json was not put back: ${error.message}`, { containerId: args.containerId, path: args.specPath });
    warnings.push(`the caller's config.json was not put back: ${error.message}`);
  }
  if (args.containerId !== undefined && goneAfter(args, exitCode, lease !== undefined)) warnings.push(...(await gone()));
  for (const id of before ? await deletedSince(args, runtime, before, opts.logger) : []) warnings.push(...(await gone(id)));
  opts.notePath?.(['runtime', args.command, lease && 'prepared'].filter(Boolean).join(' '));
  return { exitCode, warnings };
}
