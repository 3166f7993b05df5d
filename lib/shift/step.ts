// One step of a shift: one pass over the tree. The walker threads chown
// ordinary inodes (chown.ts); the inodes that need more (file capabilities,
// ACLs, setuid/setgid bits, hard links, the journal of a killed run) are
// applied here, in the calling thread, one chunk at a time, with the
// journal written first (journal.ts).

import { chmodSync, lchownSync, lstatSync } from 'node:fs';
import type { UnmappedPolicy } from '../config/config';
import { systemError } from '../errors';
import type { Logger } from '../log/logger';
import { displayPath, fsPath } from '../sys/path-key';
import { mountPointsBelow } from '../sys/walk';
import { WalkerPool } from '../sys/walk-pool';
import { shiftAcl } from './acl';
import { chownVisitor, type ChownInit, type ChunkReport, type Entry } from './chown';
import { shiftFileCaps } from './fcaps';
import type { Journal, JournalRecord } from './journal';
import { sideRule, type SideRule, type Step } from './plan';
import { dumpTreeXattrs, restoreXattrs, type XattrSet } from './xattr';

const CAP = 'security.capability';
const ACL_ACCESS = 'system.posix_acl_access';
const ACL_DEFAULT = 'system.posix_acl_default';
const XATTR_PATTERN = '^(security\\.capability|system\\.posix_acl_(access|default))$';
/** Paths an error names at most. */
const MAX_NAMED = 10;
/** The walker threads' module: chown-thread.ts, bundled as dist/chown-thread.cjs beside the engine. */
const CHOWN_THREAD = { dir: import.meta.dirname, name: 'chown-thread' };

export interface Progress {
  inodes: number;
  changed: number;
  bytes?: number;
}

export interface StepContext {
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

export interface StepTotals {
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

/**
 * Applies a chunk of the inodes the walker threads left to this thread:
 * journals what the chown destroys (capabilities, setuid/setgid bits) and
 * syncs it, then chowns, restores modes and writes shifted capabilities and
 * ACLs; an inode a killed run chowned gets back what its journal saved.
 * Counts into totals. SystemError naming the path when a change fails.
 */
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
export async function runStep(ctx: StepContext): Promise<StepTotals> {
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
