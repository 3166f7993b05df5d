// Walks a tree in the calling thread and worker threads together: each
// thread reads directories from a shared queue (depth first) with
// dirReader (walk.ts) and runs its own copy of the caller's visitor, built
// from plain data by a factory that a thread module (a real file calling
// serveThread with the same factory) also serves; visitors send their
// reports back to the caller, which handles them one at a time.

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parentPort, Worker } from 'node:worker_threads';
import { dirReader, isFailure, walkError, walkFailure, type TreeVisitor, type WalkFailure } from './walk';

/** What the walk hands every thread's visitor factory. */
export interface ThreadInit<I> {
  root: string;
  mountPoints: string[];
  init: I;
}

/** Builds a thread's visitor from plain data; `report` sends to the caller's onReport. */
export type VisitorFactory<I, R> = (init: I, report: (r: R) => void) => TreeVisitor;

export type ThreadMessage<R> = { kind: 'report'; report: R } | { kind: 'done'; subdirs: string[] } | { kind: 'error'; failure: WalkFailure };

/** One thread's task: reads directories, then posts their subdirectories (or the failure). */
export function threadTask<I, R>(data: ThreadInit<I>, factory: VisitorFactory<I, R>, post: (m: ThreadMessage<R>) => void): (dirs: string[]) => void {
  const visitor = factory(data.init, (report) => post({ kind: 'report', report }));
  const read = dirReader({ mountPoints: data.mountPoints, visitor });
  return (dirs) => {
    try {
      const subdirs = read(dirs);
      visitor.end?.();
      post({ kind: 'done', subdirs });
    } catch (error) {
      post({ kind: 'error', failure: isFailure(error) ? error : walkFailure('cannot walk', data.root, error) });
    }
  };
}

/**
 * The body of a thread module: says it is ready once booted; its first
 * message is then the walk's ThreadInit, every later one a list of
 * directories to read.
 */
export function serveThread<I, R>(factory: VisitorFactory<I, R>): void {
  const port = parentPort;
  if (!port) throw new Error('serveThread runs in a worker thread');
  let task: ((dirs: string[]) => void) | undefined;
  port.on('message', (m: ThreadInit<I> | string[]) => (task ? task(m as string[]) : (task = threadTask(m as ThreadInit<I>, factory, (r) => port.postMessage(r)))));
  port.postMessage({ kind: 'ready' });
}

// Set by scripts/build.mjs: thread modules are then the .cjs files beside the bundle.
declare const OCI_USERNS_BUNDLED: boolean | undefined;

/**
 * A worker running a thread module: `dir/name.cjs` in the build, else the
 * TypeScript source `dir/name.ts` through tsx (tests, running from source),
 * whose loader a worker does not inherit.
 */
function startWorker(dir: string, name: string): Worker {
  if (typeof OCI_USERNS_BUNDLED === 'boolean') return new Worker(join(dir, `${name}.cjs`));
  const source = JSON.stringify(pathToFileURL(join(dir, `${name}.ts`)).href);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${source}); });`, { eval: true });
}

// Directories per task of the calling thread: it also applies the reports and hands out work, so its tasks stay short.
const CALLING_THREAD_DIRS = 8;
const WORKER_DIRS = 256;

interface Runner {
  /** The most directories one task gets. */
  max: number;
  send(dirs: string[]): void;
}

export interface PoolOptions<I, R> {
  /** Worker threads besides the calling thread; 0 walks in the calling thread alone. */
  threads: number;
  /** The thread module (it calls serveThread with `factory`): its directory and name without extension. */
  module: { dir: string; name: string };
  factory: VisitorFactory<I, R>;
}

export interface PoolWalkOptions<I, R> {
  root: string;
  /** Mount points inside root (keys); their subtrees are skipped. */
  mountPoints: ReadonlySet<string>;
  init: I;
  /** Called for every report in turn (never twice at once); the walk waits for the last before it resolves. */
  onReport: (report: R) => Promise<void>;
}

/**
 * Walker threads, started before the walk so that they boot while the
 * caller does other work. The calling thread walks too, so a small tree is
 * done before they are up. One walk per pool; close() ends the threads.
 */
export class WalkerPool<I, R> {
  private readonly workers: Worker[] = [];
  /** Booted and not yet given to the walk. */
  private readonly booted: Worker[] = [];
  private bootError: unknown;
  private onBoot?: (worker: Worker) => void;
  private onError?: (error: unknown) => void;

  constructor(private readonly options: PoolOptions<I, R>) {
    for (let i = 0; i < options.threads; i++) {
      const worker = startWorker(options.module.dir, options.module.name);
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

  /** Walks everything below root. Directories go to idle runners from a shared queue, depth first. */
  walk(options: PoolWalkOptions<I, R>): Promise<void> {
    const data: ThreadInit<I> = { root: options.root, mountPoints: [...options.mountPoints], init: options.init };
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
      const handle = (runner: Runner, m: ThreadMessage<R>) => {
        if (settled) return;
        if (m.kind === 'report') {
          applied = applied.then(() => options.onReport(m.report));
          applied.catch(finish);
        } else if (m.kind === 'error') {
          finish(walkError(m.failure));
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
        worker.on('message', (m: ThreadMessage<R>) => handle(runner, m));
        worker.postMessage(data);
        idle.push(runner);
        dispatch();
      };
      if (this.bootError !== undefined) return finish(this.bootError);
      this.onError = finish;
      this.onBoot = join;
      // A task queued before the walk failed must not run: nothing is changed after the error.
      const self: Runner = { max: CALLING_THREAD_DIRS, send: (dirs) => setImmediate(() => settled || task(dirs)) };
      const task = threadTask(data, this.options.factory, (m) => handle(self, m));
      idle.push(self);
      for (const worker of this.booted.splice(0)) join(worker);
      dispatch();
    });
  }
}
