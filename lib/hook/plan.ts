// Plan: what the hook does for one container at one stage, decided from
// the state, config.json, oci-userns's config and the facts read beforehand
// (lib/hook/read.ts), with no I/O, so every decision is testable without
// root against the runtimes' real states and specs. lib/hook/act.ts carries
// the plan out. Refusals are thrown here, before anything changes.

import { dirname } from 'node:path';
import { systemdSpecProblems } from '../cgroup/spec-check';
import type { Config, OverlapPolicy, UnmappedPolicy } from '../config/config';
import { InputError, RefusedError } from '../errors';
import { toHost, type IdMapping } from '../oci/idmap';
import { HOOK_ENABLE_ANNOTATION, isSystemdContainer, NAME_ANNOTATION, SOURCE_ANNOTATION } from '../oci/policy';
import { podRole } from '../oci/pod';
import { hasUserNamespace, processUser, rootfsPath, type Spec } from '../oci/spec';
import type { ContainerState } from '../oci/state';

export const HOOK_STAGES = ['prestart', 'createRuntime', 'poststop'] as const;
export type HookStage = (typeof HOOK_STAGES)[number];

export function isHookStage(value: string): value is HookStage {
  return (HOOK_STAGES as readonly string[]).includes(value);
}

/** The container's host mappings: from config.json, or from its process when it joined a user namespace by path. */
export interface ContainerMappings {
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
}

/** What lib/hook/read.ts found out for a container that needs setting up. */
export interface HookFacts {
  mappings: ContainerMappings;
  /** The rootfs, resolved once; absent when config.json names none or shift.mode is never (then it is not looked at). */
  rootfs?: {
    /** Its real path: an existing directory. */
    path: string;
    /** Owned per the mapping already (lib/shift/state.ts alreadyShifted: the state file and the directory's owner). */
    shifted: boolean;
    /** Its path is an idmapped mount already (the shim's private mount, one an engine made): nothing to give, and the raw tree behind it keeps its original owners. Looked at only when shift.method is not chown. */
    idmappedMount?: boolean;
    /** Not shifted for this mapping, and not with its original owners either (lib/shift/state.ts notOriginalOwners: why); looked at only when shift.method is not chown. */
    shiftedAway?: string;
    /**
     * A directory above the rootfs that only root and the container's range
     * can search, set only when every other place its raw tree shows (bind
     * mounts, other mounts of its filesystem) is closed too
     * (lib/rootfs/access.ts rawTreeAccess); absent when some host user can
     * reach the raw tree, or when shift.method is chown (then it is not
     * looked at).
     */
    closedBy?: string;
    /** Where a host user can reach the raw tree, when closedBy is absent for that reason: the rootfs path or another mount of the tree. */
    openAt?: string;
  };
}

/** Whether a container needs anything at this stage, from the state and config.json alone. */
export type Applicability = { kind: 'nothing'; reason: string } | { kind: 'release' } | { kind: 'setup'; pid: number };

/** Registering the container's host ids in the registry, refusing overlaps (lib/ranges/ranges.ts guardContainer). */
export interface GuardStep {
  kind: 'guard';
  name?: string;
  source: 'shim' | 'external';
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  overlap: OverlapPolicy;
  /** The rootfs's real path, recorded with the range: refused while another live container needs other owners on its raw tree (lib/ranges/rootfs-users.ts). */
  rootfs?: string;
  /** Whether the container sees the rootfs through an idmapped mount (an idmap step, or one there already) or owns the raw tree (a shift, a tree shifted already); unset without a rootfs step. */
  rootfsIdmapped?: boolean;
}

/** Shifting the rootfs's owners into the range with the chown engine (lib/shift); `idmapRefused` says why auto did not idmap. */
export type ShiftStep = { kind: 'shift'; path: string; mode: 'auto' | 'always-verify'; unmapped: UnmappedPolicy; idmapRefused?: string };

/**
 * An ID-mapped mount of the rootfs in the container's mount namespace
 * (lib/rootfs/idmap-rootfs.ts), then `fallback` when the kernel or the
 * filesystem refuses it (shift.method auto); without a fallback (idmap) a
 * refusal fails the container.
 */
export type IdmapStep = { kind: 'idmap'; path: string; pid: number; fallback?: ShiftStep };

/** Giving the rootfs to container root. One variant per method. */
export type RootfsStep = { kind: 'none'; reason: string } | { kind: 'skip'; path: string; reason: 'already shifted' | 'an idmapped mount' } | ShiftStep | IdmapStep;

/** Delegating the cgroup to container root (host ids uid:gid), or why not (runtime spec rules, lib/cgroup/spec-check.ts). */
export type CgroupStep = { kind: 'skip'; problems: string[] } | { kind: 'delegate'; pid: number; uid: number; gid: number };

export type HookPlan =
  | { kind: 'nothing'; containerId: string; reason: string }
  | {
      kind: 'release';
      containerId: string;
      /** A CRI pod's container: the engine removes its rootfs with it (kubelet never starts a container id again), so its shift record goes too. */
      forgetShift?: string;
    }
  | {
      kind: 'setup';
      containerId: string;
      pid: number;
      range: GuardStep;
      rootfs: RootfsStep;
      cgroup: CgroupStep;
      /** Logged before anything changes. */
      warnings: string[];
    };

export interface PlanInput {
  stage: HookStage;
  state: ContainerState;
  spec: Spec;
  config: Pick<Config, 'shift' | 'cgroup' | 'overlap'>;
  /** Required when applicability() says 'setup'. */
  facts?: HookFacts;
}

/**
 * Whether the container is ours to handle: it has a user namespace, is not
 * opted out with io.oci-userns.enable=false (hooks.d may start the hook for
 * it by its command alone), and at a setup stage has a pid (runtime spec:
 * the state carries it from createRuntime on). Throws InputError for a setup
 * stage without a pid.
 */
export function applicability(stage: HookStage, state: ContainerState, spec: Spec): Applicability {
  if (!hasUserNamespace(spec)) return { kind: 'nothing', reason: 'no user namespace' };
  if ((spec.annotations?.[HOOK_ENABLE_ANNOTATION] ?? state.annotations?.[HOOK_ENABLE_ANNOTATION]) === 'false') {
    return { kind: 'nothing', reason: `${HOOK_ENABLE_ANNOTATION}=false` };
  }
  if (stage === 'poststop') return { kind: 'release' };
  if (!state.pid) throw new InputError(`state for ${stage} has no pid`, { containerId: state.id, hint: 'the runtime must pass the container pid before start' });
  return { kind: 'setup', pid: state.pid };
}

/**
 * A tree already owned per the mapping is never idmapped (the mount would map
 * its ids a second time): it is skipped, or verified under always-verify.
 * The safety rule (README "ID-mapped rootfs"): a rootfs that every host user
 * can reach is not idmapped, since files container root writes through the
 * mount are host root's on disk (a setuid file made inside would be a host
 * setuid-root file): auto shifts it with chown instead, idmap refuses.
 */
function rootfsStep(config: PlanInput['config'], facts: HookFacts, pid: number, containerId: string): RootfsStep {
  const { method, mode, unmapped } = config.shift;
  if (mode === 'never') return { kind: 'none', reason: 'shift.mode is never' };
  if (facts.rootfs === undefined) return { kind: 'none', reason: 'config.json names no rootfs' };
  const { path, shifted, idmappedMount, shiftedAway, closedBy, openAt } = facts.rootfs;
  // Never walked, not even to verify: a chown through the mount would land on the raw tree mapped back.
  if (idmappedMount) return { kind: 'skip', path, reason: 'an idmapped mount' };
  if (mode === 'auto' && shifted) return { kind: 'skip', path, reason: 'already shifted' };
  const shift: ShiftStep = { kind: 'shift', path, mode, unmapped };
  if (method === 'chown' || shifted) return shift;
  if (shiftedAway !== undefined) {
    // The mount would map on-disk ids of another range: the container would see its files as nobody's.
    const why = `the rootfs ${path} is not at its original owners (${shiftedAway}), and an idmapped mount maps on-disk ids`;
    if (method === 'auto') return { ...shift, idmapRefused: why };
    throw new RefusedError(why, { containerId, path, hint: `give it back its original owners first (oci-userns unshift ${path}), or set shift.method to auto or chown` });
  }
  if (closedBy === undefined) {
    const where = openAt === undefined || openAt === path ? `the rootfs ${path}` : `the raw tree of the rootfs ${path} at ${openAt} (a mount that shows it)`;
    const why = `every host user can reach ${where} (no directory above it is closed to users outside the container's range), so an idmapped rootfs would let them run setuid files made inside as host root`;
    if (method === 'auto') return { ...shift, idmapRefused: why };
    const parent = dirname(openAt ?? path);
    const uid = toHost(facts.mappings.uidMappings, 0);
    const gid = toHost(facts.mappings.gidMappings, 0);
    throw new RefusedError(why, { containerId, path, hint: `close its parent to others (chown ${uid}:${gid} ${parent} && chmod 0700 ${parent}), or set shift.method to auto or chown` });
  }
  return { kind: 'idmap', path, pid, ...(method === 'auto' ? { fallback: shift } : {}) };
}

/** Refuses a systemd container whose spec rules out delegation under cgroup.strict; else a warning for it. */
function cgroupStep(input: PlanInput, pid: number, host: { uid: number; gid: number }, warnings: string[]): CgroupStep {
  const problems = systemdSpecProblems(input.spec);
  if (problems.length === 0) return { kind: 'delegate', pid, ...host };
  if (isSystemdContainer(input.spec)) {
    const message = `cgroup not delegated: ${problems.join('; ')}`;
    if (input.config.cgroup.strict) {
      throw new RefusedError(`${message}; systemd cannot run without a delegated cgroup`, {
        containerId: input.state.id,
        hint: 'give the container a cgroup namespace and mount /sys/fs/cgroup read-write',
      });
    }
    warnings.push(`${message}; systemd will fail to create its cgroups`);
  }
  return { kind: 'skip', problems };
}

/**
 * The plan for one hook run. Throws InputError when process.user is not
 * mapped, RefusedError under cgroup.strict (see cgroupStep), and an Error
 * when a setup is planned without facts (a caller's bug).
 */
export function planHook(input: PlanInput): HookPlan {
  const { state, spec } = input;
  const containerId = state.id;
  const applies = applicability(input.stage, state, spec);
  if (applies.kind === 'nothing') return { kind: 'nothing', containerId, reason: applies.reason };
  if (applies.kind === 'release') {
    const rootfs = podRole(spec) !== undefined && input.config.shift.mode !== 'never' ? rootfsPath(spec, state.bundle) : undefined;
    return { kind: 'release', containerId, ...(rootfs === undefined ? {} : { forgetShift: rootfs }) };
  }
  const facts = input.facts;
  if (facts === undefined) throw new Error(`planHook: no facts for container ${containerId} at ${input.stage}`);
  const { uidMappings, gidMappings } = facts.mappings;
  const user = processUser(spec);
  const uid = toHost(uidMappings, user.uid);
  const gid = toHost(gidMappings, user.gid);
  if (uid === undefined || gid === undefined) {
    throw new InputError(`process.user ${user.uid}:${user.gid} is not mapped by the container's uid/gid mappings`, { containerId });
  }
  const warnings: string[] = [];
  const cgroup = cgroupStep(input, applies.pid, { uid, gid }, warnings);
  const name = spec.annotations?.[NAME_ANNOTATION];
  const rootfs = rootfsStep(input.config, facts, applies.pid, containerId);
  const rootfsIdmapped = rootfs.kind === 'none' ? undefined : rootfs.kind === 'idmap' || (rootfs.kind === 'skip' && rootfs.reason === 'an idmapped mount');
  return {
    kind: 'setup',
    containerId,
    pid: applies.pid,
    range: {
      kind: 'guard',
      ...(name ? { name } : {}),
      source: spec.annotations?.[SOURCE_ANNOTATION] === 'shim' ? 'shim' : 'external',
      uidMappings,
      gidMappings,
      overlap: input.config.overlap,
      ...(facts.rootfs ? { rootfs: facts.rootfs.path } : {}),
      ...(rootfsIdmapped !== undefined ? { rootfsIdmapped } : {}),
    },
    rootfs,
    cgroup,
    warnings,
  };
}
