// The hook pipeline: from the runtime's state on stdin to a verdict. Reads
// and validates the state and the bundle's config.json, decides whether the
// container needs anything (a user namespace), and does it. The entry in
// hooks/run.ts turns the outcome or the error into an exit code, one stderr
// line and one log line.

import { promises as fs } from 'node:fs';
import { delegateCgroup } from '../cgroup/delegate';
import { systemdSpecProblems } from '../cgroup/spec-check';
import type { Config } from '../config/config';
import { errnoCode, InputError, RefusedError, systemError } from '../errors';
import { formatIdMap, parseProcIdMap, toHost, type IdMapping } from '../oci/idmap';
import { readStdinBounded, readStreamBounded } from '../oci/input';
import type { Logger } from '../log/logger';
import { HOOK_ENABLE_ANNOTATION, isSystemdContainer, NAME_ANNOTATION, SOURCE_ANNOTATION } from '../oci/policy';
import { alreadyShifted, resolveRootfs } from '../shift/state';
import { hasUserNamespace, processUser, readSpec, rootfsPath, specMappings, type Spec } from '../oci/spec';
import { parseState, type ContainerState } from '../oci/state';

export const HOOK_STAGES = ['prestart', 'createRuntime', 'poststop'] as const;
export type HookStage = (typeof HOOK_STAGES)[number];

export function isHookStage(value: string): value is HookStage {
  return (HOOK_STAGES as readonly string[]).includes(value);
}

export interface HookInput {
  stage: HookStage;
  /** Where the state comes from: the process's stdin, or a stream (tests). */
  stdin: 'process' | NodeJS.ReadableStream;
  config: Config;
  logger: Logger;
  /** Where /proc is; tests point it elsewhere. */
  procRoot?: string;
}

export interface HookOutcome {
  containerId: string;
  /** 'not-applicable': nothing to do for this container; 'done': the stage's work is done. */
  outcome: 'not-applicable' | 'done';
  reason?: string;
  status: ContainerState['status'];
  pid?: number;
  bundle: string;
  /** What was done, for the log line. */
  actions: Record<string, unknown>;
}

/** Reads and validates what the runtime gives a hook: the state, then the bundle's config.json. */
export async function readHookInput(input: HookInput): Promise<{ state: ContainerState; spec: Spec }> {
  const { config, logger } = input;
  const limits = { maxBytes: config.limits.inputBytes, timeoutMs: config.limits.stdinTimeoutMs, what: 'state on stdin' };
  const raw = input.stdin === 'process' ? ((await readStdinBounded(limits)) ?? (await readStreamBounded(process.stdin, limits))) : await readStreamBounded(input.stdin, limits);
  const text = raw.toString('utf8');
  logger.debug('state received', { state: text });
  const state = parseState(text);
  const spec = await readSpec(state.bundle, config.limits.inputBytes, state.id);
  logger.debug('config.json read', { containerId: state.id, spec });
  return { state, spec };
}

export async function runHook(input: HookInput): Promise<HookOutcome> {
  const { state, spec } = await readHookInput(input);
  const base = { containerId: state.id, status: state.status, pid: state.pid, bundle: state.bundle };
  if (!hasUserNamespace(spec)) {
    return { ...base, outcome: 'not-applicable', reason: 'no user namespace', actions: {} };
  }
  // "false" opts a container out even when hooks.d started the hook for it by its command.
  if ((spec.annotations?.[HOOK_ENABLE_ANNOTATION] ?? state.annotations?.[HOOK_ENABLE_ANNOTATION]) === 'false') {
    return { ...base, outcome: 'not-applicable', reason: `${HOOK_ENABLE_ANNOTATION}=false`, actions: {} };
  }
  if (input.stage === 'poststop') {
    const { releaseContainer } = await import('../ranges/ranges');
    const released = await releaseContainer({ stateDir: input.config.stateDir, id: state.id, logger: input.logger, procRoot: input.procRoot });
    return { ...base, outcome: 'done', actions: { released: released !== undefined } };
  }
  if (!state.pid) {
    throw new InputError(`state for ${input.stage} has no pid`, { containerId: state.id, hint: 'the runtime must pass the container pid before start' });
  }
  const actions = await setUp(input, state as ContainerState & { pid: number }, spec);
  return { ...base, outcome: 'done', actions };
}

/** The container's mappings: from the spec, or from the process when it joined an existing user namespace. */
async function containerMappings(spec: Spec, pid: number, procRoot: string, containerId: string): Promise<{ uidMappings: IdMapping[]; gidMappings: IdMapping[] }> {
  const fromSpec = specMappings(spec);
  if (fromSpec.uidMappings.length > 0 && fromSpec.gidMappings.length > 0) return fromSpec;
  const read = async (name: string) => {
    const path = `${procRoot}/${pid}/${name}`;
    try {
      return parseProcIdMap(await fs.readFile(path, 'utf8'), path);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') throw new InputError(`container process ${pid} no longer exists`, { containerId, cause: error });
      if (error instanceof InputError) throw error;
      throw systemError('cannot read', path, error, { containerId });
    }
  };
  return { uidMappings: await read('uid_map'), gidMappings: await read('gid_map') };
}

async function setUp(input: HookInput, state: ContainerState & { pid: number }, spec: Spec): Promise<Record<string, unknown>> {
  const { config, logger } = input;
  const containerId = state.id;
  const procRoot = input.procRoot ?? '/proc';
  const { uidMappings, gidMappings } = await containerMappings(spec, state.pid, procRoot, containerId);
  const user = processUser(spec);
  const hostUid = toHost(uidMappings, user.uid);
  const hostGid = toHost(gidMappings, user.gid);
  if (hostUid === undefined || hostGid === undefined) {
    throw new InputError(`process.user ${user.uid}:${user.gid} is not mapped by the container's uid/gid mappings`, { containerId });
  }
  // Refusals come before anything changes.
  const cgroupProblems = delegationCheck(input, spec, containerId);
  const actions: Record<string, unknown> = {};
  // The registry's modules load only for containers that have a user namespace.
  const { guardContainer, releaseContainer } = await import('../ranges/ranges');
  const { entry, created } = await guardContainer({
    stateDir: config.stateDir,
    id: containerId,
    ...(spec.annotations?.[NAME_ANNOTATION] ? { name: spec.annotations[NAME_ANNOTATION] } : {}),
    uidMappings,
    gidMappings,
    source: spec.annotations?.[SOURCE_ANNOTATION] === 'shim' ? 'shim' : 'external',
    pid: state.pid,
    overlap: config.overlap,
    logger,
    procRoot,
  });
  actions.range = { source: entry.source, uidMappings: formatIdMap(uidMappings), gidMappings: formatIdMap(gidMappings) };
  try {
    await shiftRootfs(input, state, spec, uidMappings, gidMappings, actions);
    await delegate(input, state, cgroupProblems, hostUid, hostGid, actions);
  } catch (error) {
    // Nothing half done: a container that fails here never starts, so the
    // range registered for it by this call is given back.
    if (created) await releaseContainer({ stateDir: config.stateDir, id: containerId, logger, procRoot });
    throw error;
  }
  return actions;
}

async function shiftRootfs(input: HookInput, state: ContainerState, spec: Spec, uidMap: IdMapping[], gidMap: IdMapping[], actions: Record<string, unknown>): Promise<void> {
  const { config, logger } = input;
  const rootfs = rootfsPath(spec, state.bundle);
  if (rootfs === undefined || config.shift.mode === 'never') return;
  if (config.shift.mode === 'auto' && alreadyShifted(resolveRootfs(rootfs, state.id), { uid: uidMap, gid: gidMap }, config.stateDir)) {
    actions.shift = { action: 'skipped' };
    return;
  }
  // Loaded only when a tree may need work: the engine (embedded compressed,
  // with its xattr tooling and worker code) costs ~12 ms to load.
  const { ensureShifted } = await import('../shift/shift');
  const result = await ensureShifted({ rootfs, uidMap, gidMap, mode: config.shift.mode, unmapped: config.shift.unmapped, stateDir: config.stateDir, containerId: state.id, logger });
  actions.shift = { action: result.action, inodes: result.inodes, changed: result.changed, ms: result.durationMs };
  if (result.skippedMounts.length > 0) logger.info('mount points inside the rootfs were not shifted', { containerId: state.id, skippedMounts: result.skippedMounts });
}

/** Why the spec rules out delegation (runtime spec rules); refuses up front for a systemd container under cgroup.strict. */
function delegationCheck(input: HookInput, spec: Spec, containerId: string): string[] {
  const problems = systemdSpecProblems(spec);
  if (problems.length > 0 && isSystemdContainer(spec)) {
    const message = `cgroup not delegated: ${problems.join('; ')}`;
    if (input.config.cgroup.strict) {
      throw new RefusedError(`${message}; systemd cannot run without a delegated cgroup`, {
        containerId,
        hint: 'give the container a cgroup namespace and mount /sys/fs/cgroup read-write',
      });
    }
    input.logger.warn(`${message}; systemd will fail to create its cgroups`, { containerId });
  }
  return problems;
}

async function delegate(input: HookInput, state: ContainerState & { pid: number }, problems: string[], hostUid: number, hostGid: number, actions: Record<string, unknown>): Promise<void> {
  if (problems.length > 0) {
    actions.cgroup = { skipped: problems };
    return;
  }
  const result = await delegateCgroup({ pid: state.pid, uid: hostUid, gid: hostGid, containerId: state.id, procRoot: input.procRoot, logger: input.logger });
  actions.cgroup = { path: result.cgroupPath, changed: result.changed.length, uid: hostUid, gid: hostGid };
}
