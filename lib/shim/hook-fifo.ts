// The createRuntime hook of a container the shim prepared, served by the
// shim's own Node.js process instead of a second one (issue 16, speed).
// The shim has allocated the range and given the rootfs to container root
// before the runtime ran; what is left needs the container's pid and
// cgroup, which exist only from createRuntime on (runtime-spec
// config.md#createruntime-hooks). So the hook the runtime runs is a few
// lines of /bin/sh: it passes the state it got on stdin to the shim over a
// FIFO in the container's root-only directory (STATEDIR/shim/ID,
// prepared.ts), reads the shim's one-line verdict from a second FIFO and
// exits with it.
//
// Descriptors: the shim opens both FIFOs read-write and non-blocking
// (Linux fifo(7): such an open never blocks, and the shim is then both
// ends' peer), with O_CLOEXEC as libuv opens every file, so the runtime and
// the container never get them; the hook, a child of the runtime, opens
// its own. A shim that is gone: the hook says so at once when its pid is
// gone, and otherwise the hook definition's timeout ends the wait.

import { execFile } from 'node:child_process';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../config/config';
import { INTERNAL_EXIT_CODE, isUsernsError, systemError } from '../errors';
import { outcomeLogLine, runHook } from '../hook/hook';
import type { Logger } from '../log/logger';
import { stopwatch } from '../log/stopwatch';
import type { Spec, SpecHook } from '../oci/spec';

const REQUEST = 'request';
const VERDICT = 'verdict';

/**
 * $1 the container's directory, $2 the shim's pid. The state goes as one
 * line: a newline in JSON is whitespace between tokens, so the lines are
 * joined. Builtins only (no fork on the runtime's path). The verdict is
 * "CODE" or "CODE message" (the line the Node hook would print on stderr).
 */
const SCRIPT = `d=$1 s=
kill -0 "$2" 2>/dev/null || { echo "oci-userns: createRuntime: the shim (pid $2) that prepared this container is gone" >&2; exit 4; }
while IFS= read -r l || [ -n "$l" ]; do s=$s$l; done
printf '%s\\n' "$s" >"$d/${REQUEST}" || exit 6
read -r code message <"$d/${VERDICT}" || { echo "oci-userns: createRuntime: the shim (pid $2) gave no verdict" >&2; exit 6; }
[ -z "$message" ] || printf '%s\\n' "$message" >&2
case $code in '' | *[!0-9]*) exit 70 ;; esac
exit "$code"`;

/** The hook definition (runtime-spec config.md#posix-platform-hooks): `timeout` seconds bound the wait for a shim that died. */
export function fifoHook(opts: { dir: string; shimPid: number; env: readonly string[]; timeout: number }): SpecHook {
  return { path: '/bin/sh', args: ['sh', '-c', SCRIPT, 'oci-userns-hook', opts.dir, String(opts.shimPid)], env: [...opts.env], timeout: opts.timeout };
}

/** Whether `hook` is a FIFO hook served from `dir`. */
export function isFifoHook(hook: SpecHook, dir: string): boolean {
  return hook.path === '/bin/sh' && hook.args?.[2] === SCRIPT && hook.args[4] === dir;
}

export interface HookVerdict {
  /** The hook's exit status: 0, or the exit code of the error (lib/errors.ts). */
  code: number;
  /** The one line for the runtime's stderr when it failed. */
  message?: string;
}

export interface HookFifos {
  /**
   * Serves one hook run with `handle`: resolves with the state text the
   * hook passed once it is answered, or undefined when `close` came first.
   * A state over `maxBytes` is answered with exit 2.
   */
  serve(handle: (stateText: string) => Promise<HookVerdict>, maxBytes: number): Promise<string | undefined>;
  /** Closes both FIFOs: once the runtime has ended, no hook of this container runs any more. Idempotent. */
  close(): void;
}

/** Makes the two FIFOs in `dir` (mkfifo(1): Node.js has no mkfifo) and opens them. Throws SystemError. */
export async function openHookFifos(dir: string): Promise<HookFifos> {
  const request = join(dir, REQUEST);
  const verdict = join(dir, VERDICT);
  try {
    await promisify(execFile)('mkfifo', ['-m', '0600', request, verdict]);
  } catch (error) {
    throw systemError('cannot make the hook FIFOs in', dir, error);
  }
  const open = (path: string) => {
    try {
      return openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    } catch (error) {
      throw systemError('cannot open', path, error);
    }
  };
  const verdictFd = open(verdict);
  let requestFd: number;
  try {
    requestFd = open(request);
  } catch (error) {
    closeSync(verdictFd);
    throw error;
  }
  const input = new Socket({ fd: requestFd, readable: true, writable: false });
  input.pause();
  let closed = false;
  let settle: (text: string | undefined) => void = () => undefined;
  const close = () => {
    if (closed) return;
    closed = true;
    input.destroy();
    closeSync(verdictFd);
    settle(undefined);
  };
  input.on('error', close);
  const serve = (handle: (stateText: string) => Promise<HookVerdict>, maxBytes: number) =>
    new Promise<string | undefined>((resolve) => {
      settle = resolve;
      if (closed) return resolve(undefined);
      const answer = (text: string, result: HookVerdict) => {
        const line = `${result.code}${result.message ? ` ${result.message.replace(/\n/g, ' ')}` : ''}\n`;
        // A pipe takes a line this short whole (pipe(7): PIPE_BUF); a hook already gone just does not read it.
        if (!closed) writeSync(verdictFd, line);
        resolve(text);
      };
      const chunks: Buffer[] = [];
      let size = 0;
      input.on('data', (chunk: Buffer) => {
        const end = chunk.indexOf(10);
        chunks.push(end < 0 ? chunk : chunk.subarray(0, end));
        size += end < 0 ? chunk.length : end;
        if (end < 0 && size <= maxBytes) return;
        input.pause();
        const text = Buffer.concat(chunks).toString('utf8');
        if (size > maxBytes) answer(text, { code: 2, message: `oci-userns: createRuntime: the state on stdin is over ${maxBytes} bytes` });
        else void handle(text).then((result) => answer(text, result));
      });
      input.resume();
    });
  return { serve, close };
}

/**
 * What `oci-userns hook createRuntime` would do, done in the shim with the
 * spec it gave the container (lib/hook: guard the range with the pid, the
 * rootfs step, delegate the cgroup), logged as the hook logs it; a failure
 * is the verdict with the hook's exit code and stderr line.
 */
export async function serveCreateRuntime(stateText: string, opts: { spec: Spec; config: Config; logger: Logger; procRoot?: string }): Promise<HookVerdict> {
  const durationMs = stopwatch();
  try {
    const outcome = await runHook({ stage: 'createRuntime', stateText, config: opts.config, logger: opts.logger, procRoot: opts.procRoot, spec: opts.spec });
    const line = outcomeLogLine('createRuntime', outcome);
    opts.logger.info(line.message, { ...line.fields, servedBy: 'shim', durationMs: durationMs() });
    return { code: 0 };
  } catch (error) {
    const expected = isUsernsError(error);
    const message = `oci-userns: createRuntime: ${expected ? error.message : `internal error: ${error instanceof Error ? error.message : String(error)}`}`;
    opts.logger.error(message, { containerId: expected ? error.containerId : undefined, outcome: 'error', servedBy: 'shim', durationMs: durationMs() });
    return { code: expected ? error.exitCode : INTERNAL_EXIT_CODE, message };
  }
}
