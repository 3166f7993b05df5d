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
  /** The step starts from the tree's own, unshifted ids (decides file capabilities' rootid: capsRoot). */
  unshifted: boolean;
}

export interface StepTotals {
  inodes: number;
  changed: number;
  unmappedCount: number;
  unmappedPaths: string[];
  skippedMounts: string[];
}

/**
 * Whom the capabilities of a file belong to after the step, as the host
 * uid of the root of the user namespace they apply in (the kernel applies
 * a v3 capability only in a namespace whose root is rootid, or below it:
 * security/commoncap.c, rootid_owns_currentns). A tree not shifted yet
 * (its ids are the image's own) has no user namespaces: a v3 rootid there
 * names a namespace of the machine that built the image (container root of
 * a rootless build), so its caps go to container root, as v2 caps do.
 * In a shifted tree, rootid is the host id of a container user (container
 * root, or the root of a namespace nested in the container): it stays that
 * container user in the new range. See README, "File capabilities".
 */
export function capsRoot(uid: Pick<SideRule, 'source' | 'target'>, unshifted: boolean): (oldRootid: number | undefined) => number | undefined {
  return (oldRootid) => {
    const container = oldRootid === undefined || unshifted ? 0 : uid.source(oldRootid);
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
          const next = shiftFileCaps(cap, capsRoot(rules.uid, ctx.unshifted));
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
        const next = shiftFileCaps(Buffer.from(replay.cap, 'hex'), capsRoot(rules.uid, ctx.unshifted));
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
 * The other names of hard links already applied, stated again now: a name
 * whose inode was the one changed shows its new owner and is done; a name
 * still owned per the source is an inode of its own. On overlayfs without
 * index, changing the first name copied it up as a new inode, which keeps
 * the inode number the other names still show.
 */
function stillPending(names: Entry[], rules: { uid: SideRule; gid: SideRule }, containerId?: string): Entry[] {
  const out: Entry[] = [];
  for (const e of names) {
    let st;
    try {
      st = lstatSync(fsPath(e.path));
    } catch (error) {
      throw systemError('cannot stat', displayPath(e.path), error, { containerId });
    }
    const uid = rules.uid.map(st.uid);
    const gid = rules.gid.map(st.gid);
    if (uid !== undefined && gid !== undefined && (uid !== st.uid || gid !== st.gid)) out.push({ ...e, uid: st.uid, gid: st.gid, mode: st.mode, nlink: st.nlink });
  }
  return out;
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
  const linked = new Set<string>();
  const firstLink = (e: Entry) => {
    if (e.link === undefined) return true;
    if (linked.has(e.link)) return false;
    linked.add(e.link);
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
        const others: Entry[] = [];
        let repeats = 0;
        for (const e of report.specials) {
          if (firstLink(e)) specials.push(e);
          else if (ctx.replay.has(e.path)) {
            specials.push(e);
            repeats++;
          } else others.push(e);
        }
        if (specials.length > 0) await applyBatch(ctx, rules, specials, attrs, totals);
        totals.inodes -= repeats;
        if (!ctx.dryRun && others.length > 0) {
          const apart = stillPending(others, rules, ctx.containerId);
          if (apart.length > 0) await applyBatch(ctx, rules, apart, attrs, totals);
        }
        progress();
      },
    });
  } finally {
    await pool.close();
  }
  const st = lstatSync(ctx.root);
  const rootEntry: Entry = { path: ctx.root, type: 'dir', uid: st.uid, gid: st.gid, mode: st.mode, nlink: st.nlink };
  await applyBatch(ctx, rules, [rootEntry], attrs, totals);
  progress();
  return totals;
}
