// Act: carries out a plan (lib/hook/plan.ts) and says what it did, for the
// entry's one log line. The registry, the shift engine and the cgroup
// delegation load only here, when a plan needs them: a container without a
// user namespace pays for none of them.

import { HostError } from '../errors';
import type { Logger } from '../log/logger';
import { stopwatch } from '../log/stopwatch';
import { formatIdMap } from '../oci/idmap';
import { forgetState } from '../shift/state';
import type { CgroupStep, GuardStep, HookPlan, IdmapStep, RootfsStep, ShiftStep } from './plan';

export interface ActOptions {
  stateDir: string;
  logger: Logger;
  /** Where /proc is; tests point it elsewhere. */
  procRoot?: string;
}

/** What the chown engine did; `idmapRefused` says why an idmap was refused first (shift.method auto). */
export type ChownAction = { action: 'shifted' | 'skipped' | 'verified' | 'disabled'; inodes: number; changed: number; ms: number; idmapRefused?: string };

/**
 * What the rootfs step did: 'skipped' when the tree had the mapping already;
 * 'idmapped' with the whole step's ms and the helper's system calls' µs;
 * 'already-idmapped' when the runtime or engine had idmapped it.
 */
export type ShiftAction = { action: 'skipped' } | ChownAction | { action: 'idmapped'; ms: number; syscallUs: number } | { action: 'already-idmapped' };

/** What the cgroup step did: the directory and how many of its paths changed owner, or why it was skipped. */
export type CgroupAction = { skipped: string[] } | { path: string; changed: number; uid: number; gid: number };

/** Field names and shapes are those of the log line (README "Logs"). */
export interface HookActions {
  released?: boolean;
  /** A pod container's shift record was removed with its rootfs. */
  forgotShift?: boolean;
  range?: { source: string; uidMappings: string; gidMappings: string };
  shift?: ShiftAction;
  cgroup?: CgroupAction;
}

export type HookResult = { outcome: 'not-applicable'; reason: string } | { outcome: 'done'; actions: HookActions };

async function chown(step: ShiftStep, range: GuardStep, containerId: string, opts: ActOptions): Promise<ChownAction> {
  const elapsed = stopwatch();
  if (step.idmapRefused) opts.logger.info('the rootfs is not idmapped; shifting it with chown instead', { containerId, path: step.path, reason: step.idmapRefused });
  const base = { rootfs: step.path, uidMap: range.uidMappings, gidMap: range.gidMappings, unmapped: step.unmapped, stateDir: opts.stateDir, containerId, logger: opts.logger };
  // The engine is loaded only when a tree may need work (about 12 ms).
  const engine = await import('../shift/shift');
  // In auto mode read.ts has already answered "shifted?": shiftTree goes
  // straight to the locked read of the state. always-verify walks a
  // shifted tree again, which ensureShifted decides.
  const result =
    step.mode === 'auto'
      ? await engine.shiftTree(base).then((r) => ({ ...r, action: r.shifted ? ('shifted' as const) : ('skipped' as const) }))
      : await engine.ensureShifted({ ...base, mode: step.mode });
  if (result.skippedMounts.length > 0) opts.logger.info('mount points inside the rootfs were not shifted', { containerId, skippedMounts: result.skippedMounts });
  return { action: result.action, inodes: result.inodes, changed: result.changed, ms: Math.round(elapsed()), ...(step.idmapRefused ? { idmapRefused: step.idmapRefused } : {}) };
}

/** The idmap step; a refusal falls back to chown (which logs why) or, without a fallback, is a HostError. */
async function idmap(step: IdmapStep, range: GuardStep, containerId: string, opts: ActOptions): Promise<ShiftAction> {
  const { idmapRootfs } = await import('../rootfs/idmap-rootfs');
  const result = await idmapRootfs({ pid: step.pid, rootfs: step.path, containerId, procRoot: opts.procRoot });
  if (result.action === 'idmapped') {
    const t = result.timings;
    return { action: 'idmapped', ms: result.ms, syscallUs: t.setnsUs + t.openTreeUs + t.mountSetattrUs + t.moveMountUs };
  }
  if (result.action === 'already-idmapped') return { action: 'already-idmapped' };
  if (!step.fallback) {
    throw new HostError(`the rootfs ${result.rootfs} cannot be idmapped here (${result.reason})`, { containerId, path: result.rootfs, hint: 'set shift.method to auto (chown where idmap is refused) or chown' });
  }
  // Guarded as idmapped: other idmapped containers may share the tree, and the chown would take it from them.
  const { claimRootfsOwners } = await import('../ranges/ranges');
  await claimRootfsOwners({ stateDir: opts.stateDir, id: containerId, logger: opts.logger, procRoot: opts.procRoot });
  return chown({ ...step.fallback, idmapRefused: result.reason }, range, containerId, opts);
}

async function giveRootfs(step: RootfsStep, range: GuardStep, containerId: string, opts: ActOptions): Promise<ShiftAction | undefined> {
  switch (step.kind) {
    case 'none':
      return undefined;
    case 'skip':
      return step.reason === 'an idmapped mount' ? { action: 'already-idmapped' } : { action: 'skipped' };
    case 'shift':
      return chown(step, range, containerId, opts);
    case 'idmap':
      return idmap(step, range, containerId, opts);
  }
}

async function delegate(step: CgroupStep, containerId: string, opts: ActOptions): Promise<CgroupAction> {
  if (step.kind === 'skip') return { skipped: step.problems };
  const { delegateCgroup } = await import('../cgroup/delegate');
  const result = await delegateCgroup({ pid: step.pid, uid: step.uid, gid: step.gid, containerId, procRoot: opts.procRoot, logger: opts.logger });
  return { path: result.cgroupPath, changed: result.changed.length, uid: step.uid, gid: step.gid };
}

/**
 * Carries out the plan. For a setup: guards the range, then the rootfs
 * step, then the cgroup step; when either of those fails, a range this run
 * registered is released again (the container never starts) and the error
 * is rethrown. Errors are those of lib/ranges, lib/shift, lib/rootfs and
 * lib/cgroup, and a HostError when shift.method idmap meets a refusal.
 */
export async function actOnPlan(plan: HookPlan, opts: ActOptions): Promise<HookResult> {
  if (plan.kind === 'nothing') return { outcome: 'not-applicable', reason: plan.reason };
  const { stateDir, logger, procRoot } = opts;
  const id = plan.containerId;
  const { guardContainer, releaseContainer } = await import('../ranges/ranges');
  if (plan.kind === 'release') {
    const released = await releaseContainer({ stateDir, id, logger, procRoot });
    const actions: HookActions = { released: released !== undefined };
    if (plan.forgetShift !== undefined) {
      if (forgetState(stateDir, plan.forgetShift)) actions.forgotShift = true;
    }
    return { outcome: 'done', actions };
  }
  for (const warning of plan.warnings) logger.warn(warning, { containerId: id });
  const { range } = plan;
  const { entry, created } = await guardContainer({
    stateDir,
    id,
    ...(range.name !== undefined ? { name: range.name } : {}),
    uidMappings: range.uidMappings,
    gidMappings: range.gidMappings,
    source: range.source,
    pid: plan.pid,
    overlap: range.overlap,
    ...(range.rootfs !== undefined ? { rootfs: range.rootfs } : {}),
    ...(range.rootfsIdmapped !== undefined ? { rootfsIdmapped: range.rootfsIdmapped } : {}),
    logger,
    procRoot,
  });
  const actions: HookActions = { range: { source: entry.source, uidMappings: formatIdMap(range.uidMappings), gidMappings: formatIdMap(range.gidMappings) } };
  try {
    const shifted = await giveRootfs(plan.rootfs, range, id, opts);
    if (shifted !== undefined) actions.shift = shifted;
    actions.cgroup = await delegate(plan.cgroup, id, opts);
  } catch (error) {
    if (created) await releaseContainer({ stateDir, id, logger, procRoot });
    throw error;
  }
  return { outcome: 'done', actions };
}
