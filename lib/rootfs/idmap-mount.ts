// Starts the idmap helper (native/idmap-mount.c, installed as
// PREFIX/libexec/oci-userns/oci-userns-idmap) and turns its exit status into
// a value or a typed error. The helper exists because an ID-mapped mount in
// a container's mount namespace needs setns(CLONE_NEWNS), which the kernel
// refuses to a multi-threaded process such as node.

import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InputError, SystemError } from '../errors';

export const IDMAP_HELPER_NAME = 'oci-userns-idmap';

/** The helper's exit statuses (native/idmap-mount.c). */
export const HELPER_EXIT = { ok: 0, usage: 2, unsupported: 4, syscall: 6 } as const;

/** The helper's own timings of one mount, in microseconds. */
export interface IdmapTimings {
  setnsUs: number;
  openTreeUs: number;
  mountSetattrUs: number;
  moveMountUs: number;
}

/**
 * 'idmapped': the clone is in place. 'unsupported': the kernel or the
 * filesystem refused (or the helper is not installed) and nothing changed;
 * `reason` is one line for the log, the caller falls back to chown.
 */
export type IdmapOutcome = { outcome: 'idmapped'; timings: IdmapTimings } | { outcome: 'unsupported'; reason: string };

/** How the helper process ended, as execFile reports it. */
export interface HelperRun {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Where the helper is, given the running program's path: beside it (dist/
 * after a build) or in PREFIX/libexec/oci-userns/ (install.sh, with the
 * program in PREFIX/lib/oci-userns/ and linked from PREFIX/bin/), unless
 * $OCI_USERNS_IDMAP_HELPER names it. Undefined when none exists.
 */
export function findIdmapHelper(opts: { programPath?: string; env?: NodeJS.ProcessEnv; exists?: (path: string) => boolean } = {}): string | undefined {
  const env = opts.env ?? process.env;
  const exists = opts.exists ?? existsSync;
  if (env.OCI_USERNS_IDMAP_HELPER) return env.OCI_USERNS_IDMAP_HELPER;
  const program = opts.programPath ?? (process.argv[1] && realpathOr(process.argv[1]));
  if (!program) return undefined;
  const dir = dirname(program);
  const libexec = (prefix: string) => join(prefix, 'libexec', 'oci-userns', IDMAP_HELPER_NAME);
  const candidates = [libexec(dirname(dirname(dir))), libexec(dirname(dir)), join(dir, IDMAP_HELPER_NAME)];
  return candidates.find((path) => exists(path));
}

// A program reached through a symlink (/usr/bin/oci-userns -> /usr/local/bin/oci-userns) looks beside its target.
const realpathOr = (path: string) => {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
};

const TIMINGS = /^ok setns_us=(\d+) open_tree_us=(\d+) mount_setattr_us=(\d+) move_mount_us=(\d+)$/;

/**
 * What a finished helper run means. Pure. Exit 0 -> { refused: false };
 * 4 -> { refused: true, reason: the helper's stderr line }; 2 -> InputError
 * (bad arguments, a namespace file of the wrong kind); 6 (a namespace file
 * that is gone included), any other status or a signal -> SystemError. Errors carry the context's
 * containerId and path.
 */
export function helperVerdict(run: HelperRun, context: { path: string; containerId?: string }): { refused: false } | { refused: true; reason: string } {
  const line = run.stderr.trim().split('\n')[0] || `${IDMAP_HELPER_NAME} exited ${run.exitCode ?? `on ${run.signal}`}`;
  const where = { path: context.path, containerId: context.containerId };
  if (run.exitCode === HELPER_EXIT.ok) return { refused: false };
  if (run.exitCode === HELPER_EXIT.unsupported) return { refused: true, reason: line };
  if (run.exitCode === HELPER_EXIT.usage) throw new InputError(line, where);
  throw new SystemError(line, where);
}

/** The timings line a successful mount prints; SystemError when it is not there (a helper of another version). */
export function parseTimings(stdout: string, context: { path: string; containerId?: string }): IdmapTimings {
  const m = TIMINGS.exec(stdout.trim());
  if (!m) throw new SystemError(`${IDMAP_HELPER_NAME} succeeded but printed no timings: ${JSON.stringify(stdout.slice(0, 200))}`, { ...context, hint: 'the installed helper does not match this program; reinstall' });
  return { setnsUs: Number(m[1]), openTreeUs: Number(m[2]), mountSetattrUs: Number(m[3]), moveMountUs: Number(m[4]) };
}

function runHelper(helper: string, args: string[]): Promise<HelperRun | 'missing'> {
  return new Promise((resolve, reject) => {
    execFile(helper, args, { timeout: 10_000, killSignal: 'SIGKILL', encoding: 'utf8' }, (error, stdout, stderr) => {
      if (!error) return resolve({ exitCode: 0, signal: null, stdout, stderr });
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES') return resolve('missing');
      if (typeof code === 'number' || error.signal) return resolve({ exitCode: typeof code === 'number' ? code : null, signal: (error.signal as NodeJS.Signals) ?? null, stdout, stderr });
      reject(new SystemError(`cannot run ${helper}: ${code ?? error.message}`, { path: helper, cause: error }));
    });
  });
}

const missing = (helper: string | undefined): { outcome: 'unsupported'; reason: string } => ({
  outcome: 'unsupported',
  reason: `the idmap helper ${helper ?? IDMAP_HELPER_NAME} is not installed (npm run build, or install.sh puts it in PREFIX/libexec/oci-userns/)`,
});

export interface IdmapMountOptions {
  /** The helper; findIdmapHelper() when absent. */
  helper?: string;
  /** Absolute path of the mount tree to clone, as the target mount namespace sees it. */
  source: string;
  /** Where the idmapped clone goes; `source` when absent (over the original). */
  target?: string;
  /** A user namespace file, e.g. /proc/PID/ns/user: its mappings become the mount's. */
  usernsFile: string;
  /** A mount namespace file, e.g. /proc/PID/ns/mnt, to do it in; this process's when absent. */
  mntnsFile?: string;
  containerId?: string;
}

/**
 * Puts an idmapped clone of the mount tree at `source` over `target`
 * (open_tree(2) OPEN_TREE_CLONE|AT_RECURSIVE, mount_setattr(2)
 * MOUNT_ATTR_IDMAP on the top mount, move_mount(2)). Returns 'unsupported'
 * when the kernel, the filesystem or the install cannot (nothing changed);
 * throws InputError (bad namespace file) or SystemError.
 */
export async function idmapMount(opts: IdmapMountOptions): Promise<IdmapOutcome> {
  const helper = opts.helper ?? findIdmapHelper();
  if (!helper) return missing(helper);
  const args = ['mount', '--userns', opts.usernsFile, ...(opts.mntnsFile ? ['--mntns', opts.mntnsFile] : []), opts.source, ...(opts.target ? [opts.target] : [])];
  const run = await runHelper(helper, args);
  if (run === 'missing') return missing(helper);
  const context = { path: opts.source, containerId: opts.containerId };
  const verdict = helperVerdict(run, context);
  return verdict.refused ? { outcome: 'unsupported', reason: verdict.reason } : { outcome: 'idmapped', timings: parseTimings(run.stdout, context) };
}

/**
 * Whether the mount holding `path` accepts an idmap (the helper's probe:
 * everything up to mount_setattr on a detached clone, which is dropped).
 * Returns { supported: false, reason } when it does not or the helper is
 * missing; throws InputError or SystemError when the probe itself fails.
 */
export async function probeIdmap(opts: { helper?: string; path: string; usernsFile?: string; mntnsFile?: string }): Promise<{ supported: true } | { supported: false; reason: string }> {
  const helper = opts.helper ?? findIdmapHelper();
  const run = helper ? await runHelper(helper, ['probe', ...(opts.usernsFile ? ['--userns', opts.usernsFile] : []), ...(opts.mntnsFile ? ['--mntns', opts.mntnsFile] : []), opts.path]) : 'missing';
  if (run === 'missing') return { supported: false, reason: missing(helper).reason };
  const verdict = helperVerdict(run, { path: opts.path });
  return verdict.refused ? { supported: false, reason: verdict.reason } : { supported: true };
}
