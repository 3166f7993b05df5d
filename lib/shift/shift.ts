// The rootfs ownership shift: moves every inode of a tree from the mapping
// it was last shifted to (identity at first) to a target mapping, with ACLs,
// file capabilities and setuid/setgid bits, crash-safe and idempotent. See
// plan.ts for why a rerun can tell done inodes from pending ones, record.ts
// and journal.ts for what is recorded where, chown.ts for the walker
// threads' part. One shift of a tree at a time: the lock
// stateDir/shift/KEY.lock.d (lib/sys/lock.ts).

import { chmodSync, lchownSync, lstatSync, mkdirSync } from 'node:fs';
import type { ShiftMode, UnmappedPolicy } from '../config/config';
import { RefusedError, systemError } from '../errors';
import { IDENTITY, toHost, type IdMap } from '../oci/idmap';
import { nullLogger, type Logger } from '../log/logger';
import { shiftAcl } from './acl';
import { shiftFileCaps } from './fcaps';
import { planSteps, sideRule, type SideRule, type Step } from './plan';
import { Journal, type JournalRecord } from './journal';
import { readState, writeState } from './record';
import { alreadyShifted, resolveRootfs, sameOwnership, statePaths, type Ownership, type ShiftState } from './state';
import { chownVisitor, type ChownInit, type ChunkReport, type Entry } from './chown';
import { acquireLock, type HeldLock } from '../sys/lock';
import { mountPointsBelow, WalkerPool } from '../sys/walk';
import { displayPath, fsPath } from '../sys/path-key';
import { dumpTreeXattrs, restoreXattrs, type XattrSet } from './xattr';

export type { IdMap } from '../oci/idmap';
export type { ShiftMode, UnmappedPolicy } from '../config/config';

const CAP = 'security.capability';
const ACL_ACCESS = 'system.posix_acl_access';
const ACL_DEFAULT = 'system.posix_acl_default';
const XATTR_PATTERN = '^(security\\.capability|system\\.posix_acl_(access|default))$';
const MAX_NAMED = 10;
/** The walker threads' module: chown-thread.ts, bundled as dist/chown-thread.cjs beside the engine. */
const CHOWN_THREAD = { dir: import.meta.dirname, name: 'chown-thread' };

export interface Progress {
  inodes: number;
  changed: number;
  bytes?: number;
}

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

interface StepContext {
  root: string;
  step: Step;
  unmapped: UnmappedPolicy;
  /** Absent in a dry run. */
  journal?: Journal;
  /** Records of a killed run of this step: what chown may already have destroyed. */
  replay: Map<string, JournalRecord>;
  logger: Logger;
  containerId?: string;
  batchSize?: number;
  threads?: number;
  onProgress?: (p: Progress) => void;
  /** Count only; touch nothing. */
  dryRun?: boolean;
}

interface StepTotals {
  inodes: number;
  changed: number;
  unmappedCount: number;
  unmappedPaths: string[];
  skippedMounts: string[];
}

/** Caps belonged to container root of the old mapping (v2) or to the container user of rootid (v3); they now belong to that user's new host id. */
function capsRoot(uid: SideRule): (oldRootid: number | undefined) => number | undefined {
  return (oldRootid) => {
    const container = oldRootid === undefined ? 0 : uid.source(oldRootid);
    return container === undefined ? undefined : uid.target(container);
  };
}

interface Planned {
  entry: Entry;
  uid: number;
  gid: number;
}

async function applyBatch(ctx: StepContext, rules: { uid: SideRule; gid: SideRule }, batch: Entry[], dump: Map<string, XattrSet>, totals: StepTotals): Promise<void> {
  const journal: JournalRecord[] = [];
  const chowns: Planned[] = [];
  const chmods: Array<[string, number]> = [];
  const writes: Array<[string, XattrSet]> = [];
  const unmappedAt = (path: string) => {
    totals.unmappedCount++;
    if (totals.unmappedPaths.length < MAX_NAMED) totals.unmappedPaths.push(displayPath(path));
  };
  for (const entry of batch) {
    const uid = rules.uid.map(entry.uid);
    const gid = rules.gid.map(entry.gid);
    if (uid === undefined || gid === undefined) {
      unmappedAt(entry.path);
      continue;
    }
    const attrs = dump.get(entry.path);
    const write: XattrSet = new Map();
    const chown = uid !== entry.uid || gid !== entry.gid;
    const replay = ctx.replay.get(entry.path);
    if (chown) {
      chowns.push({ entry, uid, gid });
      if (entry.type !== 'dir') {
        const record: JournalRecord = { path: entry.path };
        const cap = attrs?.get(CAP);
        if (cap) {
          const next = shiftFileCaps(cap, capsRoot(rules.uid));
          if (next === undefined) unmappedAt(entry.path);
          else {
            record.cap = cap.toString('hex');
            write.set(CAP, next);
          }
        }
        if (entry.mode & 0o6000) {
          record.mode = entry.mode & 0o7777;
          chmods.push([entry.path, record.mode]);
        }
        if (record.cap !== undefined || record.mode !== undefined) journal.push(record);
      }
    } else if (replay) {
      // A killed run chowned this inode after journaling what the chown destroyed; put it back.
      if (replay.cap !== undefined && !attrs?.has(CAP)) {
        const next = shiftFileCaps(Buffer.from(replay.cap, 'hex'), capsRoot(rules.uid));
        if (next) write.set(CAP, next);
      }
      if (replay.mode !== undefined && (entry.mode & 0o7777) !== replay.mode) chmods.push([entry.path, replay.mode]);
    }
    for (const name of [ACL_ACCESS, ACL_DEFAULT]) {
      const acl = attrs?.get(name);
      if (!acl) continue;
      const shifted = shiftAcl(acl, (id) => rules.uid.map(id), (id) => rules.gid.map(id));
      if (shifted.unmapped.length > 0) unmappedAt(entry.path);
      else if (shifted.changed) write.set(name, shifted.value);
    }
    if (write.size > 0) writes.push([entry.path, write]);
  }
  totals.inodes += batch.length;
  totals.changed += chowns.length;
  if (ctx.dryRun) return;
  ctx.journal?.append(journal);
  for (const { entry, uid, gid } of chowns) {
    try {
      lchownSync(fsPath(entry.path), uid, gid);
    } catch (error) {
      throw systemError('cannot change the owner of', displayPath(entry.path), error, { containerId: ctx.containerId });
    }
  }
  for (const [path, mode] of chmods) {
    try {
      chmodSync(fsPath(path), mode);
    } catch (error) {
      throw systemError('cannot restore the mode of', displayPath(path), error, { containerId: ctx.containerId });
    }
  }
  await restoreXattrs(writes);
}

/**
 * One pass over the tree: one getfattr -R lists the inodes with ACLs or
 * capabilities (before any chown, which destroys capabilities) while the
 * walker thread boots; then it and this thread chown ordinary inodes, and
 * the specials they hand back (those xattrs, setuid/setgid, hard links,
 * journal replays) are journalled and applied here, one chunk at a time.
 * The root goes last.
 */
async function runStep(ctx: StepContext): Promise<StepTotals> {
  const rules = { uid: sideRule(ctx.step.uid.from, ctx.step.uid.to, ctx.unmapped), gid: sideRule(ctx.step.gid.from, ctx.step.gid.to, ctx.unmapped) };
  const totals: StepTotals = { inodes: 0, changed: 0, unmappedCount: 0, unmappedPaths: [], skippedMounts: [] };
  const linked = new Set<number>();
  const firstLink = (e: Entry) => {
    if (e.type === 'dir' || e.nlink < 2) return true;
    if (linked.has(e.ino)) return false;
    linked.add(e.ino);
    return true;
  };
  const progress = () => ctx.onProgress?.({ inodes: totals.inodes, changed: totals.changed });
  const mountPoints = mountPointsBelow(ctx.root);
  const pool = new WalkerPool<ChownInit, ChunkReport>({ threads: ctx.threads ?? 1, module: CHOWN_THREAD, factory: chownVisitor });
  let attrs: Map<string, XattrSet>;
  try {
    attrs = ctx.dryRun ? new Map<string, XattrSet>() : await dumpTreeXattrs(ctx.root, XATTR_PATTERN);
    for (const path of attrs.keys()) if ([...mountPoints].some((m) => path === m || path.startsWith(`${m}/`))) attrs.delete(path);
    await pool.walk({
      root: ctx.root,
      mountPoints,
      init: {
        uid: { table: rules.uid.table, overflow: rules.uid.overflow },
        gid: { table: rules.gid.table, overflow: rules.gid.overflow },
        special: [...ctx.replay.keys(), ...attrs.keys()],
        dryRun: Boolean(ctx.dryRun),
        chunk: ctx.batchSize ?? 4096,
      },
      onReport: async (report) => {
        for (const path of report.skipped.map(displayPath)) {
          totals.skippedMounts.push(path);
          ctx.logger.info('shift: skipped a mount point inside the rootfs', { path, containerId: ctx.containerId });
        }
        totals.inodes += report.inodes;
        totals.changed += report.changed;
        totals.unmappedCount += report.unmapped;
        for (const path of report.unmappedPaths) if (totals.unmappedPaths.length < MAX_NAMED) totals.unmappedPaths.push(displayPath(path));
        // Threads meet the links of an inode in any order: the one a killed run journalled must be applied even when another came first.
        const specials: Entry[] = [];
        let repeats = 0;
        for (const e of report.specials) {
          if (firstLink(e)) specials.push(e);
          else if (ctx.replay.has(e.path)) {
            specials.push(e);
            repeats++;
          }
        }
        if (specials.length > 0) await applyBatch(ctx, rules, specials, attrs, totals);
        totals.inodes -= repeats;
        progress();
      },
    });
  } finally {
    await pool.close();
  }
  const st = lstatSync(ctx.root);
  const rootEntry: Entry = { path: ctx.root, type: 'dir', uid: st.uid, gid: st.gid, mode: st.mode, ino: st.ino, nlink: st.nlink };
  await applyBatch(ctx, rules, [rootEntry], attrs, totals);
  progress();
  return totals;
}

function unmappedError(root: string, totals: StepTotals, containerId?: string): RefusedError {
  const more = totals.unmappedCount > totals.unmappedPaths.length ? ` and ${totals.unmappedCount - totals.unmappedPaths.length} more` : '';
  return new RefusedError(`cannot shift ${root}: ${totals.unmappedCount} inode(s) have owners or ACL entries outside the mapping: ${totals.unmappedPaths.join(', ')}${more}`, {
    containerId,
    path: root,
    hint: 'fix their owners, or set shift.unmapped to "overflow" to give them the overflow id 65534; the other inodes were shifted and a rerun finishes the job',
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

interface MoveOptions extends Omit<ShiftTreeOptions, 'uidMap' | 'gidMap'> {
  /** The target, or undefined for the original ownership (unshift). */
  target?: Ownership;
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
      state = { ...state, seq: state.seq + 1, pending: { target, steps: planSteps(state.current, target), index: 0 } };
      await writeState(options.stateDir, state);
      logger.info('shift: started', { rootfs: root, containerId: options.containerId, steps: state.pending!.steps.length });
    } else {
      logger.info('shift: finishing a shift that did not complete', { rootfs: root, containerId: options.containerId, step: state.pending.index });
    }
    const pending = state.pending!;
    for (let index = pending.index; index < pending.steps.length; index++) {
      const { journal, records } = Journal.resume(paths.journal, index);
      const totals = await runStep({
        root,
        step: pending.steps[index]!,
        unmapped: options.unmapped,
        journal,
        replay: records,
        logger,
        containerId: options.containerId,
        batchSize: options.batchSize,
        threads: options.threads,
        onProgress: options.onProgress,
      });
      result.inodes = totals.inodes;
      result.changed += totals.changed;
      result.skippedMounts = totals.skippedMounts;
      if (totals.unmappedCount > 0) {
        journal.close();
        throw unmappedError(root, totals, options.containerId);
      }
      state = { ...state, seq: state.seq + 1, pending: { ...pending, index: index + 1 } };
      if (index + 1 < pending.steps.length) await writeState(options.stateDir, state);
      journal.remove();
    }
    state = { version: 1, seq: state.seq + 1, rootfs: root, original: state.original, previous: state.current, current: pending.target, inodes: result.inodes };
    await writeState(options.stateDir, state);
    logger.info('shift: done', { rootfs: root, containerId: options.containerId, inodes: result.inodes, changed: result.changed });
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
  for (const step of steps.slice(0, 1)) Object.assign(totals, await runStep({ root, step, unmapped: options.unmapped, replay: new Map(), logger: options.logger ?? nullLogger, dryRun: true, batchSize: options.batchSize, threads: options.threads }));
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
    const totals = await runStep({ root, step: steps[0]!, unmapped: options.unmapped, journal, replay: records, logger: options.logger ?? nullLogger, containerId: options.containerId, onProgress: options.onProgress });
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
