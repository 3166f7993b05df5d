// Walks a tree on the calling thread and walker threads without following
// symlinks or leaving its filesystem, and changes the owner of every
// ordinary inode in the thread that stats it. The rest ("specials": the
// paths the caller names, such as those with ACLs or capabilities or in the
// journal of a killed run, and setuid/setgid files and hard links) go back
// to the caller, which journals and applies them one chunk at a time.
// Memory holds the directories still to read, the special paths and one
// chunk per thread, never the list of all paths.
//
// The thread body is one self-contained function: stringified into each
// worker (so it runs the same from the bundle and under tsx), and called in
// the calling thread.

import fs, { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { systemError } from '../errors';
import { parseMountinfo } from '../sys/mountinfo';
import { displayPath } from '../sys/path-key';

export type EntryType = 'dir' | 'file' | 'symlink' | 'other';

export interface Entry {
  path: string;
  type: EntryType;
  uid: number;
  gid: number;
  mode: number;
  ino: number;
  nlink: number;
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

/** One side (uid or gid) of a step's rule: see ruleTable in shift-plan.ts. */
export interface IdRule {
  table: number[];
  /** The id an unmapped id gets, or undefined when it is an error. */
  overflow: number | undefined;
}

export interface WalkOptions {
  root: string;
  /** Mount points inside root (absolute paths); their subtrees are skipped. */
  mountPoints: ReadonlySet<string>;
  uid: IdRule;
  gid: IdRule;
  /** Paths always left to the caller. */
  special: Iterable<string>;
  /** Count only: no chown. */
  dryRun: boolean;
  /** Inodes per report. */
  chunk?: number;
  /** Called for every chunk in turn (never twice at once); the walk waits for the last before it resolves. */
  onChunk: (report: ChunkReport) => Promise<void>;
}

/** Mount points strictly below root, from /proc/self/mountinfo. */
export function mountPointsBelow(root: string, mountinfoText = readFileSync('/proc/self/mountinfo', 'utf8')): Set<string> {
  const prefix = root.endsWith('/') ? root : `${root}/`;
  return new Set(parseMountinfo(mountinfoText).map((m) => m.mountPoint).filter((p) => p.startsWith(prefix)));
}

interface ThreadData {
  root: string;
  dev: number;
  mountPoints: string[];
  uid: number[];
  gid: number[];
  /** -1: unmapped ids are errors. */
  uidOverflow: number;
  gidOverflow: number;
  special: string[];
  dryRun: boolean;
  chunk: number;
}

type ThreadMessage = ({ kind: 'chunk' } & ChunkReport) | { kind: 'done'; subdirs: string[] } | { kind: 'error'; op: string; path: string; code?: string; message: string };

interface ThreadError {
  op: string;
  path: string;
  code?: string;
  message: string;
}

/**
 * The thread body: returns the task that reads a list of directories. Uses
 * nothing but its parameters (it is stringified into workers).
 */
function walker(fsm: typeof fs, data: ThreadData, post: (m: ThreadMessage) => void): (dirs: string[]) => void {
  const mounts = new Set(data.mountPoints);
  const special = new Set(data.special);
  const fail = (op: string, path: string, error: unknown): ThreadError => {
    const e = error as { code?: string; message?: string };
    return { op, path, code: e?.code, message: String(e?.message ?? error) };
  };
  // Paths are keys (path-key.ts): a name that is not UTF-8 makes its path a NUL and the bytes as latin1.
  const real = (key: string): string | Buffer => (key.charCodeAt(0) === 0 ? Buffer.from(key.slice(1), 'latin1') : key);
  const childKeys = (dir: string): string[] => {
    const binaryDir = dir.charCodeAt(0) === 0;
    const prefix = dir.endsWith('/') ? dir : `${dir}/`;
    if (!binaryDir) {
      const names = fsm.readdirSync(dir);
      if (!names.some((name) => name.includes('\uFFFD'))) return names.map((name) => prefix + name);
    }
    // Some name was not UTF-8: read the names again as bytes.
    const bytePrefix = binaryDir ? prefix : `\0${Buffer.from(prefix, 'utf8').toString('latin1')}`;
    return fsm.readdirSync(real(dir), { encoding: 'buffer' }).map((name) => {
      const text = name.toString('utf8');
      return !binaryDir && Buffer.from(text, 'utf8').equals(name) ? prefix + text : bytePrefix + name.toString('latin1');
    });
  };
  const map = (table: number[], overflow: number, id: number): number => {
    for (let i = 0; i < table.length; i += 3) if (id >= table[i]! && id < table[i + 1]!) return id + table[i + 2]!;
    return overflow;
  };
  let report: { kind: 'chunk' } & ChunkReport = { kind: 'chunk', inodes: 0, changed: 0, unmapped: 0, unmappedPaths: [], skipped: [], specials: [] };
  let seen = 0;
  const flush = () => {
    if (seen === 0 && report.skipped.length === 0) return;
    post(report);
    report = { kind: 'chunk', inodes: 0, changed: 0, unmapped: 0, unmappedPaths: [], skipped: [], specials: [] };
    seen = 0;
  };
  const visit = (path: string, st: fs.Stats, type: EntryType) => {
    seen++;
    const uid = map(data.uid, data.uidOverflow, st.uid);
    const gid = map(data.gid, data.gidOverflow, st.gid);
    const chown = uid !== st.uid || gid !== st.gid;
    const leave = (st.nlink > 1 && type !== 'dir') || special.has(path) || (chown && type !== 'dir' && (st.mode & 0o6000) !== 0);
    if (leave && uid >= 0 && gid >= 0) {
      report.specials.push({ path, type, uid: st.uid, gid: st.gid, mode: st.mode, ino: st.ino, nlink: st.nlink });
      return;
    }
    report.inodes++;
    if (uid < 0 || gid < 0) {
      report.unmapped++;
      if (report.unmappedPaths.length < 10) report.unmappedPaths.push(path);
      return;
    }
    if (!chown) return;
    report.changed++;
    if (data.dryRun) return;
    try {
      fsm.lchownSync(real(path), uid, gid);
    } catch (error) {
      throw fail('cannot change the owner of', path, error);
    }
  };
  const statOf = (path: string): fs.Stats => {
    let st: fs.Stats | undefined;
    try {
      st = fsm.lstatSync(real(path), { throwIfNoEntry: false });
    } catch (error) {
      throw fail('cannot stat', path, error);
    }
    if (st === undefined) throw fail('cannot stat (removed during the walk)', path, { code: 'ENOENT' });
    return st;
  };
  return (dirs) => {
    const subdirs: string[] = [];
    try {
      for (const dir of dirs) {
        let paths: string[];
        try {
          paths = childKeys(dir);
        } catch (error) {
          throw fail('cannot read directory', dir, error);
        }
        for (const path of paths) {
          const st = statOf(path);
          if (st.dev !== data.dev || mounts.has(path)) {
            report.skipped.push(path);
            continue;
          }
          const type: EntryType = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
          if (type === 'dir') subdirs.push(path);
          visit(path, st, type);
          if (seen >= data.chunk) flush();
        }
      }
      flush();
      post({ kind: 'done', subdirs });
    } catch (error) {
      const e = error as Partial<ThreadError>;
      post({ kind: 'error', op: e.op ?? 'cannot walk', path: e.path ?? data.root, code: e.code, message: String(e.message ?? error) });
    }
  };
}

// tsx compiles with esbuild's keepNames, which wraps inner functions in __name(); an eval'd worker has no such helper.
// A worker says it is ready once booted; its first message is then the walk's ThreadData, every later one a list of directories.
const WORKER_SOURCE = `var __name = (f) => f;
const { parentPort } = require('node:worker_threads');
const walker = (${walker.toString()});
let task;
parentPort.on('message', (m) => (task ? task(m) : (task = walker(require('node:fs'), m, (r) => parentPort.postMessage(r)))));
parentPort.postMessage({ kind: 'ready' });`;

// Directories per task of the calling thread: it also applies the specials and hands out work, so its tasks stay short.
const CALLING_THREAD_DIRS = 8;
const WORKER_DIRS = 256;

interface Runner {
  /** The most directories one task gets. */
  max: number;
  send(dirs: string[]): void;
}

/**
 * Walker threads, started before the walk so that they boot while the
 * caller does other work (the xattr dump). The calling thread walks too, so
 * a small tree is done before they are up, and threads = 0 walks in the
 * calling thread alone. One walk per pool; close() ends the threads.
 */
export class WalkerPool {
  private readonly workers: Worker[] = [];
  /** Booted and not yet given to the walk. */
  private readonly booted: Worker[] = [];
  private bootError: unknown;
  private onBoot?: (worker: Worker) => void;
  private onError?: (error: unknown) => void;

  constructor(threads: number) {
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.once('message', () => (this.onBoot ? this.onBoot(worker) : this.booted.push(worker)));
      worker.on('error', (error) => {
        this.bootError ??= error;
        this.onError?.(error);
      });
      this.workers.push(worker);
    }
  }

  close(): Promise<unknown> {
    return Promise.all(this.workers.map((w) => w.terminate()));
  }

  /**
   * Walks everything below root (not root itself: the caller does it last,
   * so its owner changes only once the tree is done). Directories go to idle
   * runners from a shared queue, depth first.
   */
  walk(options: WalkOptions): Promise<void> {
    const data: ThreadData = {
      root: options.root,
      dev: fs.lstatSync(options.root).dev,
      mountPoints: [...options.mountPoints],
      uid: options.uid.table,
      gid: options.gid.table,
      uidOverflow: options.uid.overflow ?? -1,
      gidOverflow: options.gid.overflow ?? -1,
      special: [...options.special],
      dryRun: options.dryRun,
      chunk: options.chunk ?? 4096,
    };
    return new Promise((resolve, reject) => {
      const queue = [options.root];
      const idle: Runner[] = [];
      let busy = 0;
      let settled = false;
      let applied = Promise.resolve();
      const finish = (error?: unknown) => {
        if (settled) return;
        settled = true;
        this.onBoot = (worker) => this.booted.push(worker);
        this.onError = undefined;
        if (error === undefined) resolve();
        else reject(error);
      };
      const dispatch = () => {
        while (!settled && idle.length > 0 && queue.length > 0) {
          const runner = idle.pop()!;
          const n = Math.min(runner.max, Math.ceil(queue.length / (idle.length + 1)));
          busy++;
          runner.send(queue.splice(queue.length - n, n));
        }
        if (!settled && busy === 0 && queue.length === 0) applied.then(() => finish(), finish);
      };
      const handle = (runner: Runner, m: ThreadMessage) => {
        if (settled) return;
        if (m.kind === 'chunk') {
          applied = applied.then(() => options.onChunk(m));
          applied.catch(finish);
        } else if (m.kind === 'error') {
          finish(systemError(m.op, displayPath(m.path), { code: m.code, message: m.message }));
        } else {
          queue.push(...m.subdirs);
          busy--;
          // The calling thread goes to the front of the idle list, so a booted worker is preferred.
          if (runner.max === CALLING_THREAD_DIRS) idle.unshift(runner);
          else idle.push(runner);
          dispatch();
        }
      };
      const join = (worker: Worker) => {
        const runner: Runner = { max: WORKER_DIRS, send: (dirs) => worker.postMessage(dirs) };
        worker.on('message', (m: ThreadMessage) => handle(runner, m));
        worker.postMessage(data);
        idle.push(runner);
        dispatch();
      };
      if (this.bootError !== undefined) return finish(this.bootError);
      this.onError = finish;
      this.onBoot = join;
      // A task queued before the walk failed must not run: nothing is changed after the error.
      const self: Runner = { max: CALLING_THREAD_DIRS, send: (dirs) => setImmediate(() => settled || task(dirs)) };
      const task = walker(fs, data, (m) => handle(self, m));
      idle.push(self);
      for (const worker of this.booted.splice(0)) join(worker);
      dispatch();
    });
  }
}
