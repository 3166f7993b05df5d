// The shift's work in each walker thread (lib/sys/walk.ts): changes the
// owner of every ordinary inode in the thread that stats it, per the step's
// rule (plan.ts). The rest ("specials": the paths the caller names, such as
// those with ACLs or capabilities or in the journal of a killed run, and
// setuid/setgid files and hard links) go back to the caller, which journals
// and applies them one chunk at a time. Memory holds one chunk per thread.

import fs, { type Stats } from 'node:fs';
import { walkFailure, type EntryType, type TreeVisitor } from '../sys/walk';
import { fsPath } from '../sys/path-key';
import { lookupRule } from './plan';

export interface Entry {
  path: string;
  type: EntryType;
  uid: number;
  gid: number;
  mode: number;
  nlink: number;
  /** For a hard link (nlink > 1, not a directory): its inode's identity, "dev:ino" at full precision (xino puts layer bits above 2^53). */
  link?: string;
}

/** The identity of the inode at path, from a bigint stat: numbers above 2^53 would alias. */
export function linkIdentity(path: string): string {
  const st = fs.lstatSync(fsPath(path), { bigint: true });
  return `${st.dev}:${st.ino}`;
}

/** What a thread did with one chunk, and what it leaves to the caller. */
export interface ChunkReport {
  /** Inodes done by the thread (not counting specials). */
  inodes: number;
  changed: number;
  unmapped: number;
  /** Up to 10 of them. */
  unmappedPaths: string[];
  /** Mount points (or other filesystems) met and not entered. */
  skipped: string[];
  specials: Entry[];
}

/** One side (uid or gid) of a step's rule, as data a thread can take: see ruleTable in plan.ts. */
export interface IdRule {
  table: number[];
  /** The id an unmapped id gets, or undefined when it is an error. */
  overflow: number | undefined;
}

/** A thread's instructions for one walk (plain data: it is posted to every thread). */
export interface ChownInit {
  uid: IdRule;
  gid: IdRule;
  /** Paths (keys) always left to the caller. */
  special: string[];
  /** Count only: no chown. */
  dryRun: boolean;
  /** Inodes per report. */
  chunk: number;
}

const emptyReport = (): ChunkReport => ({ inodes: 0, changed: 0, unmapped: 0, unmappedPaths: [], skipped: [], specials: [] });

/** The visitor of one thread; `report` gets every chunk. (Calls fs.lchownSync through the module object, which the crash test patches.) */
export function chownVisitor(init: ChownInit, report: (r: ChunkReport) => void): TreeVisitor {
  const special = new Set(init.special);
  const map = (rule: IdRule, id: number) => lookupRule(rule.table, id) ?? rule.overflow ?? -1;
  let chunk = emptyReport();
  let seen = 0;
  const flush = () => {
    if (seen === 0 && chunk.skipped.length === 0) return;
    report(chunk);
    chunk = emptyReport();
    seen = 0;
  };
  const visit = (path: string, st: Stats, type: EntryType) => {
    seen++;
    const uid = map(init.uid, st.uid);
    const gid = map(init.gid, st.gid);
    const chown = uid !== st.uid || gid !== st.gid;
    const leave = (st.nlink > 1 && type !== 'dir') || special.has(path) || (chown && type !== 'dir' && (st.mode & 0o6000) !== 0);
    if (leave && uid >= 0 && gid >= 0) {
      let link: string | undefined;
      try {
        link = st.nlink > 1 && type !== 'dir' ? linkIdentity(path) : undefined;
      } catch (error) {
        throw walkFailure('cannot stat', path, error);
      }
      chunk.specials.push({ path, type, uid: st.uid, gid: st.gid, mode: st.mode, nlink: st.nlink, ...(link ? { link } : {}) });
      return;
    }
    chunk.inodes++;
    if (uid < 0 || gid < 0) {
      chunk.unmapped++;
      if (chunk.unmappedPaths.length < 10) chunk.unmappedPaths.push(path);
      return;
    }
    if (!chown) return;
    chunk.changed++;
    if (init.dryRun) return;
    try {
      fs.lchownSync(fsPath(path), uid, gid);
    } catch (error) {
      throw walkFailure('cannot change the owner of', path, error);
    }
  };
  return {
    visit: (path, st, type) => {
      visit(path, st, type);
      if (seen >= init.chunk) flush();
    },
    skip: (path) => chunk.skipped.push(path),
    end: flush,
  };
}
