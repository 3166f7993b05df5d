// Which OCI runtime the shim hands over to, and what it cannot do with a
// user namespace: runc before 1.3 joins the namespaces a spec names by
// path user namespace first (libcontainer/nsenter, "Keep user NS always
// first"), and once in a user namespace that is not the host's it has no
// right to setns into a network namespace the host's user namespace owns:
// "nsexec-1: failed to setns into net namespace: Operation not permitted".
// That is the case for `exec` into any container the shim gave a user
// namespace while the engine gave it a network namespace by path (podman's,
// CNI's), and for starting an app container of a pod the shim gave a user
// namespace (it joins the pod's user namespace and the engine's network
// namespace). runc 1.3 joins in two stages; crun joins what it can first.
//
// `RUNTIME --version` is run once per binary: the answer is cached in the
// state directory, keyed by the binary's real path, size and mtime.

import { execFile } from 'node:child_process';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log/logger';
import { writeFileAtomic } from '../sys/atomic-file';

export const RUNTIME_VERSIONS_FILE = 'runtime-versions.json';

export interface RuntimeIdentity {
  /** runc, crun, or the first word of the version line. */
  name: string;
  version?: [number, number, number];
}

/** Major.minor.patch of the first version-looking token. */
export function parseVersion(text: string): [number, number, number] | undefined {
  const match = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  return match ? [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)] : undefined;
}

/** From `RUNTIME --version` output ("runc version 1.1.5+ds1", "crun version 1.8.1"). Pure. */
export function parseRuntimeVersion(text: string): RuntimeIdentity {
  const first = text.split('\n', 1)[0]!.trim();
  const name = /^(\S+)\s+version\b/.exec(first)?.[1] ?? first.split(/\s+/, 1)[0] ?? '';
  const version = parseVersion(first);
  return { name, ...(version ? { version } : {}) };
}

export const showRuntime = (r: RuntimeIdentity) => `${r.name}${r.version ? ` ${r.version.join('.')}` : ''}`;

/**
 * Whether the runtime can join, after a user namespace other than the
 * host's, a network namespace the host's user namespace owns: crun does,
 * runc from 1.3 does; older runc and runtimes it cannot tell do not. Pure.
 */
export function joinsHostNetworkAfterUserNamespace(r: RuntimeIdentity): boolean {
  if (r.name === 'crun') return true;
  if (r.name !== 'runc' || r.version === undefined) return false;
  const [major, minor] = r.version;
  return major > 1 || (major === 1 && minor >= 3);
}

/** What runc before 1.3 cannot do, in one sentence, for the shim's warnings and errors and `doctor`. */
export function runcJoinLimit(r: RuntimeIdentity): string {
  return `${showRuntime(r)} joins a user namespace before the network namespace, so it cannot exec into a container that oci-userns gave a user namespace on the engine's network namespace, nor start an app container in a pod that oci-userns gave a user namespace ("failed to setns into net namespace: Operation not permitted"); crun or runc 1.3 and later can`;
}

type Cache = Record<string, { size: number; mtimeMs: number; text: string }>;

function readCache(file: string): Cache {
  try {
    const value = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Cache) : {};
  } catch {
    return {};
  }
}

function versionText(path: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve) => {
    execFile(path, ['--version'], { timeout: 10_000, env }, (error, stdout) => resolve(error ? '' : stdout));
  });
}

/**
 * The runtime at `path` (resolved), from the cache in `stateDir` or by
 * running it with --version (then cached). A runtime that does not answer
 * is { name: '' }: not runc nor crun, so treated as unable to join.
 * A cache that cannot be written costs a --version next time, nothing else.
 */
export async function identifyRuntime(opts: { path: string; stateDir: string; env: NodeJS.ProcessEnv; logger?: Logger }): Promise<RuntimeIdentity> {
  const real = realpathSync(opts.path);
  const st = statSync(real);
  const file = join(opts.stateDir, RUNTIME_VERSIONS_FILE);
  const cache = readCache(file);
  const hit = cache[real];
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return parseRuntimeVersion(hit.text);
  const text = await versionText(real, opts.env);
  try {
    writeFileAtomic(file, `${JSON.stringify({ ...cache, [real]: { size: st.size, mtimeMs: st.mtimeMs, text } })}\n`, { mode: 0o644, operation: 'cannot cache the runtime version' });
  } catch (error) {
    opts.logger?.debug(`runtime version not cached: ${(error as Error).message}`, { path: file });
  }
  return parseRuntimeVersion(text);
}
