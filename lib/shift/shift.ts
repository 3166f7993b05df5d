// The rootfs ownership shift: moves every inode of a tree from the mapping
// it was last shifted to (identity at first) to a target mapping, with ACLs,
// file capabilities and setuid/setgid bits, crash-safe and idempotent. See
// plan.ts for why a rerun can tell done inodes from pending ones, record.ts
// and journal.ts for what is recorded where, chown.ts for the walker
// threads' part, step.ts for one pass over the tree. One shift of a tree at a time: the lock
// stateDir/shift/KEY.lock.d (lib/sys/lock.ts).

import { randomUUID } from 'node:crypto';
import { lstatSync, mkdirSync, rmSync } from 'node:fs';
import type { ShiftMode, UnmappedPolicy } from '../config/config';
import { RefusedError, systemError } from '../errors';
import { IDENTITY, sameIdMap, toHost, type IdMap } from '../oci/idmap';
import { nullLogger, type Logger } from '../log/logger';
import { runStep, type Progress, type StepTotals } from './step';
import { planSteps, type Step } from './plan';
import { Journal } from './journal';
import { readState, writeState } from './record';
import { alreadyShifted, pruneStates, resolveRootfs, rootIdentity, sameOwnership, statePaths, type Ownership, type ShiftState } from './state';
import { acquireLock, type HeldLock } from '../sys/lock';

export type { IdMap } from '../oci/idmap';
export type { Progress } from './step';
export type { ShiftMode, UnmappedPolicy } from '../config/config';



export interface ShiftTreeOptions {
  rootfs: string;
  uidMap: IdMap;
  gidMap: IdMap;
  unmapped: UnmappedPolicy;
  stateDir: string;
  containerId?: string;
  logger?: Logger;
  onProgress?: (p: Progress) => void;
  /** Inodes per report from a walker thread; tests use small batches. */
  batchSize?: number;
  /** Walker threads besides the calling thread, which walks too (default 1: two cores busy); 0 walks in the calling thread alone. */
  threads?: number;
  /** How long to wait for another process shifting the same tree (default 120 s); then HostError. */
  lockTimeoutMs?: number;
}

export interface ShiftTreeResult {
  /** False when the tree already had the target ownership. */
  shifted: boolean;
  inodes: number;
  changed: number;
  skippedMounts: string[];
}

export interface EnsureShiftedOptions {
  rootfs: string;
  uidMap: IdMap;
  gidMap: IdMap;
  mode: ShiftMode;
  unmapped: UnmappedPolicy;
  stateDir: string;
  containerId?: string;
  logger?: Logger;
  onProgress?: (p: Progress) => void;
}

export interface ShiftResult {
  action: 'skipped' | 'shifted' | 'verified' | 'disabled';
  inodes: number;
  changed: number;
  durationMs: number;
  skippedMounts: string[];
}


function unmappedError(root: string, totals: StepTotals, containerId?: string): RefusedError {
  const more = totals.unmappedCount > totals.unmappedPaths.length ? ` and ${totals.unmappedCount - totals.unmappedPaths.length} more` : '';
  return new RefusedError(`cannot shift ${root}: ${totals.unmappedCount} inode(s) have owners or ACL entries outside the mapping: ${totals.unmappedPaths.join(', ')}${more}`, {
    containerId,
    path: root,
    hint: 'the tree was left with the owners it had; fix their owners, give the container a range that maps them, or set shift.unmapped to "overflow" to give them the overflow id 65534',
  });
}

/**
 * Takes the tree's shift lock. A live holder (another container starting on
 * this rootfs) is waited for, since the tree is then usually done; a holder
 * killed mid-shift is recognised by pid and start time and its lock broken,
 * and the pending state lets this run finish its work.
 */
async function lockTree(paths: { dir: string; lock: string }, options: { lockTimeoutMs?: number; logger?: Logger }): Promise<HeldLock> {
  try {
    mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw systemError('cannot create', paths.dir, error);
  }
  return acquireLock({ path: paths.lock, timeoutMs: options.lockTimeoutMs ?? 120_000, logger: options.logger });
}

const identity: Ownership = { uid: IDENTITY, gid: IDENTITY };

/** Whether a step starts from the tree's original ids (then a v3 rootid is not a container user's: step.ts capsRoot). */
const fromOriginal = (step: Step, original: Ownership) => sameIdMap(step.uid.from, original.uid);

interface MoveOptions extends Omit<ShiftTreeOptions, 'uidMap' | 'gidMap'> {
  /** The target, or undefined for the original ownership (unshift). */
  target?: Ownership;
}

interface PendingRun {
  root: string;
  paths: { journal: string };
  options: MoveOptions;
  logger: Logger;
  result: ShiftTreeResult;
}

const reverseStep = (step: Step): Step => ({ uid: { from: step.uid.to, to: step.uid.from }, gid: { from: step.gid.to, to: step.gid.from } });

/**
 * Runs the pending steps of `state` from its index, recording each step
 * done (seq + index + 1). Returns the step that met inodes outside the
 * mapping (the steps after it not run), or undefined when all ran.
 */
async function runPending(state: ShiftState, run: PendingRun): Promise<{ index: number; totals: StepTotals } | undefined> {
  const { root, paths, options, result } = run;
  const pending = state.pending!;
  for (let index = pending.index; index < pending.steps.length; index++) {
    const { journal, records } = Journal.resume(paths.journal, index);
    const totals = await runStep({
      root,
      step: pending.steps[index]!,
      unshifted: fromOriginal(pending.steps[index]!, state.original),
      unmapped: options.unmapped,
      journal,
      replay: records,
      logger: run.logger,
      containerId: options.containerId,
      batchSize: options.batchSize,
      threads: options.threads,
      onProgress: options.onProgress,
    });
    result.inodes = totals.inodes;
    // Each step of a two-step move changes the same inodes again: an inode counts once.
    result.changed = Math.max(result.changed, totals.changed);
    result.skippedMounts = totals.skippedMounts;
    journal.remove();
    if (totals.unmappedCount > 0 && !pending.rollback) return { index, totals };
    if (index + 1 < pending.steps.length) await writeState(options.stateDir, { ...state, seq: state.seq + index + 1, pending: { ...pending, index: index + 1 } });
  }
  return undefined;
}

async function move(options: MoveOptions): Promise<ShiftTreeResult> {
  const logger = options.logger ?? nullLogger;
  const root = resolveRootfs(options.rootfs, options.containerId);
  const paths = statePaths(options.stateDir, root);
  const lock = await lockTree(paths, options);
  const result: ShiftTreeResult = { shifted: false, inodes: 0, changed: 0, skippedMounts: [] };
  try {
    let state: ShiftState = (await readState(options.stateDir, root)) ?? { version: 1, seq: 0, rootfs: root, original: identity, current: identity, previous: identity };
    const target = options.target ?? state.original;
    if (!state.pending && sameOwnership(state.current, target)) return result;
    if (!state.pending) {
      // A journal left here belongs to a shift of another tree once at this path (its record did not hold).
      for (const file of [paths.journal, `${paths.journal}.verify`]) rmSync(file, { force: true });
      const tree = { id: state.tree?.id ?? randomUUID(), ...rootIdentity(root) };
      state = { ...state, tree, seq: state.seq + 1, pending: { target, steps: planSteps(state.current, target), index: 0 } };
      await writeState(options.stateDir, state);
      logger.info('shift: started', { rootfs: root, containerId: options.containerId, steps: state.pending!.steps.length });
    } else {
      logger.info('shift: finishing a shift that did not complete', { rootfs: root, containerId: options.containerId, step: state.pending.index });
    }
    const run = { root, paths, options, logger, result };
    const failed = await runPending(state, run);
    if (failed) {
      // Nothing half done: the inodes already moved go back, so the tree keeps the owners it had (the caller releases the range).
      const pending = state.pending!;
      const back = pending.steps.slice(0, failed.index + 1).reverse().map(reverseStep);
      state = { ...state, seq: state.seq + pending.steps.length + 1, pending: { target: state.current, steps: back, index: 0, rollback: true } };
      await writeState(options.stateDir, state);
      logger.info('shift: refused; moving back the inodes already moved', { rootfs: root, containerId: options.containerId, unmapped: failed.totals.unmappedCount });
      await runPending(state, { ...run, result: { ...result } });
      await writeState(options.stateDir, { ...state, seq: state.seq + 2, pending: undefined });
      throw unmappedError(root, failed.totals, options.containerId);
    }
    const pending = state.pending!;
    state = { version: 1, seq: state.seq + pending.steps.length + 1, rootfs: root, ...(state.tree ? { tree: state.tree } : {}), original: state.original, previous: state.current, current: pending.target, inodes: result.inodes };
    await writeState(options.stateDir, state);
    logger.info('shift: done', { rootfs: root, containerId: options.containerId, inodes: result.inodes, changed: result.changed });
    const pruned = pruneStates(options.stateDir);
    if (pruned.length > 0) logger.info('shift: dropped the records of trees deleted or replaced', { rootfs: pruned });
    result.shifted = true;
    return result;
  } finally {
    lock.release();
  }
}

/** Shifts the tree to the target mapping (finishing first any shift a kill interrupted). */
export function shiftTree(options: ShiftTreeOptions): Promise<ShiftTreeResult> {
  const { uidMap, gidMap, ...rest } = options;
  return move({ ...rest, target: { uid: uidMap, gid: gidMap } });
}

/** Gives the tree back the ownership it had before its first shift. */
export function unshiftTree(options: Omit<ShiftTreeOptions, 'uidMap' | 'gidMap'>): Promise<ShiftTreeResult> {
  return move(options);
}

export interface DryRunResult {
  inodes: number;
  /** Inodes whose owner would change. */
  changed: number;
  unmapped: number;
  unmappedPaths: string[];
  skippedMounts: string[];
  /** The mapping the tree has now, and whether a shift is pending. */
  from: Ownership;
  pending: boolean;
}

/** Counts what shiftTree would change (ownership only; ACLs and caps are not read). */
export async function dryRunShift(options: Omit<ShiftTreeOptions, 'onProgress'> & { target?: Ownership }): Promise<DryRunResult> {
  const root = resolveRootfs(options.rootfs, options.containerId);
  const state = await readState(options.stateDir, root);
  const from = state?.pending ? state.pending.target : (state?.current ?? identity);
  const target = options.target ?? { uid: options.uidMap, gid: options.gidMap };
  const steps = state?.pending ? state.pending.steps.slice(state.pending.index) : sameOwnership(from, target) ? [] : planSteps(from, target);
  const totals: StepTotals = { inodes: 0, changed: 0, unmappedCount: 0, unmappedPaths: [], skippedMounts: [] };
  for (const step of steps.slice(0, 1)) Object.assign(totals, await runStep({ root, step, unshifted: fromOriginal(step, state?.original ?? identity), unmapped: options.unmapped, replay: new Map(), logger: options.logger ?? nullLogger, dryRun: true, batchSize: options.batchSize, threads: options.threads }));
  return { inodes: totals.inodes, changed: totals.changed, unmapped: totals.unmappedCount, unmappedPaths: totals.unmappedPaths, skippedMounts: totals.skippedMounts, from: state?.current ?? identity, pending: Boolean(state?.pending) };
}

/** The hook's entry: shift the rootfs unless it already has the mapping (an O(1) check in auto mode). */
export async function ensureShifted(opts: EnsureShiftedOptions): Promise<ShiftResult> {
  const started = performance.now();
  const done = (action: ShiftResult['action'], r: { inodes: number; changed: number; skippedMounts: string[] } = { inodes: 0, changed: 0, skippedMounts: [] }): ShiftResult => ({
    action,
    inodes: r.inodes,
    changed: r.changed,
    skippedMounts: r.skippedMounts,
    durationMs: Math.round(performance.now() - started),
  });
  if (opts.mode === 'never') return done('disabled');
  const root = resolveRootfs(opts.rootfs, opts.containerId);
  const target: Ownership = { uid: opts.uidMap, gid: opts.gidMap };
  if (opts.mode === 'auto' && alreadyShifted(root, target, opts.stateDir)) return done('skipped');
  const rootOwner = lstatSync(root);
  const ownerMatches = rootOwner.uid === toHost(opts.uidMap, 0) && rootOwner.gid === toHost(opts.gidMap, 0);
  const base = { rootfs: root, uidMap: opts.uidMap, gidMap: opts.gidMap, unmapped: opts.unmapped, stateDir: opts.stateDir, containerId: opts.containerId, logger: opts.logger, onProgress: opts.onProgress };
  const state = await readState(opts.stateDir, root);
  if (opts.mode === 'always-verify' && (state ? !state.pending && sameOwnership(state.current, target) : ownerMatches)) {
    const totals = await verifyTree({ ...base, from: state?.previous ?? identity });
    return done('verified', totals);
  }
  const result = await shiftTree(base);
  return done(result.shifted ? 'shifted' : 'skipped', result);
}

/** Walks a tree that should already be shifted and moves any inode still in the source range. */
async function verifyTree(options: ShiftTreeOptions & { from: Ownership }): Promise<StepTotals> {
  const root = resolveRootfs(options.rootfs, options.containerId);
  const paths = statePaths(options.stateDir, root);
  const lock = await lockTree(paths, options);
  try {
    const steps = planSteps(options.from, { uid: options.uidMap, gid: options.gidMap });
    if (steps.length !== 1) throw new RefusedError(`cannot verify ${root}: its previous and current ranges overlap, so owners are ambiguous`, { path: root, containerId: options.containerId, hint: 'set shift.mode to auto' });
    const { journal, records } = Journal.resume(`${paths.journal}.verify`, 0);
    const totals = await runStep({ root, step: steps[0]!, unshifted: fromOriginal(steps[0]!, identity), unmapped: options.unmapped, journal, replay: records, logger: options.logger ?? nullLogger, containerId: options.containerId, onProgress: options.onProgress });
    if (totals.unmappedCount > 0) {
      journal.close();
      throw unmappedError(root, totals, options.containerId);
    }
    journal.remove();
    return totals;
  } finally {
    lock.release();
  }
}
