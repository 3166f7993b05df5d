// Handing over to the real OCI runtime: find it, run it with the very
// argv the shim was given, stdio and extra descriptors inherited (terminals,
// --console-socket, --preserve-fds), signals forwarded, and its exit status
// returned for the shim to exit with.

import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, realpathSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { HostError, RefusedError, systemError } from '../errors';

/**
 * Signals not handed on: SIGKILL and SIGSTOP cannot be caught; SIGCHLD is
 * the shim's own; SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and SIGSYS are the
 * process's own faults (Node must not run JavaScript on them); runc's
 * signal proxy skips SIGURG too (signals.go), which Go uses for preemption.
 */
const NOT_FORWARDED = new Set(['SIGKILL', 'SIGSTOP', 'SIGCHLD', 'SIGSEGV', 'SIGBUS', 'SIGFPE', 'SIGILL', 'SIGTRAP', 'SIGSYS', 'SIGURG']);

/**
 * Every signal an engine or a terminal may send the runtime while it runs,
 * one name per number: runc's `run` hands them all to the container, and a
 * signal the shim did not catch would end the shim (Node's default action)
 * and leave the runtime without its parent and the container's range held.
 * Realtime signals (SIGRTMIN+n) have no name in Node and cannot be caught.
 */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = [
  ...new Map(Object.entries(osConstants.signals).filter(([name]) => !NOT_FORWARDED.has(name)).map(([name, number]) => [number, name as NodeJS.Signals])).values(),
];

/** Where the runtime is looked for when the engine clears the environment (podman's conmon does for delete). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const isExecutableFile = (path: string) => {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
};

/**
 * The real runtime's path: `runtime` itself when it has a slash, else the
 * first executable of that name on $PATH. Refuses oci-userns itself
 * (`selves`: the program, and the front bin/oci-userns-runtime when it
 * called), which would call itself forever. bin/oci-userns-runtime
 * follows the same rule in sh: keep them in step.
 */
export function resolveRuntime(runtime: string, env: NodeJS.ProcessEnv, selves: readonly string[], cwd: string): string {
  const hint = 'install runc or crun, or set runtime.path in the config file to the real runtime';
  let path: string | undefined;
  if (runtime.includes('/')) {
    path = isAbsolute(runtime) ? runtime : resolve(cwd, runtime);
    if (!isExecutableFile(path)) throw new HostError(`the real runtime ${path} is not an executable file`, { path, hint });
  } else {
    const dirs = (env.PATH || DEFAULT_PATH).split(delimiter).filter((d) => d !== '');
    path = dirs.map((d) => join(isAbsolute(d) ? d : resolve(cwd, d), runtime)).find(isExecutableFile);
    if (path === undefined) throw new HostError(`the real runtime '${runtime}' is not on PATH (${env.PATH || `unset, so ${DEFAULT_PATH}`})`, { hint });
  }
  let real: string;
  try {
    real = realpathSync(path);
  } catch (error) {
    throw systemError('cannot resolve', path, error);
  }
  const isSelf = (self: string) => {
    try {
      return realpathSync(self) === real;
    } catch {
      return false;
    }
  };
  if (selves.some(isSelf)) {
    throw new RefusedError(`the real runtime ${path} is oci-userns itself`, { path, hint: 'set runtime.path in the config file to runc or crun' });
  }
  return path;
}

export interface RunRuntimeOptions {
  path: string;
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  /** Descriptors 3..3+extraFds-1 the runtime must get too. */
  extraFds: number;
}

/**
 * Runs the runtime to its end. Returns its exit code, or 128 + the signal
 * number when a signal ended it (what a shell reports, and what engines
 * read from a runtime that was killed).
 */
export function runRuntime(opts: RunRuntimeOptions): Promise<number> {
  const stdio = ['inherit', 'inherit', 'inherit', ...Array.from({ length: opts.extraFds }, (_, i) => 3 + i)] as const;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(opts.path, [...opts.argv], { stdio: [...stdio], env: opts.env });
    const forward = (signal: NodeJS.Signals) => {
      child.kill(signal);
    };
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    const done = () => {
      for (const signal of FORWARDED_SIGNALS) process.removeListener(signal, forward);
    };
    child.once('error', (error) => {
      done();
      reject(systemError('cannot run the real runtime', opts.path, error, { hint: 'check that it is an executable runc or crun' }));
    });
    child.once('exit', (code, signal) => {
      done();
      resolvePromise(code ?? 128 + (signal ? osConstants.signals[signal] : 0));
    });
  });
}
