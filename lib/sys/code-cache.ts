// V8's code cache for the program's hot files (dist/hook.cjs and
// dist/program.cjs, bin/oci-userns.ts): the
// bytecode of the functions a run compiled, kept so that the next start
// deserializes it instead of parsing and compiling the same code again.
// Node 20 has no module.enableCompileCache; this is vm.Script's
// cachedData / createCachedData (node:vm), made after a run, so it holds
// the functions that run needed and not only the top level.
//
// Measured (bench/hook.ts, bench/shim.ts): compiling is 10 ms of the hook's
// no-op path and 13 ms of an acting `runc run` through the shim.
//
// Safety. Cached data is code: V8 checks its own version, its flags and
// the source's length, and in a release build its checksum only under
// --verify-snapshot-checksum, which this module turns on before it makes
// or reads a cache (node:v8, ~1.7 ms): without it one changed byte of the
// data ran changed bytecode or aborted every start (SIGTRAP, 'unreachable
// code') until the file was removed. A cache is used
// only from a directory and a file owned by the user running the program
// (root, in production) that nobody else can write, never through a
// symlink, and only when the source it was made from, which the file
// holds too, is byte for byte the source being run. Anything else (no
// cache, another user's, another build's, a cache V8 rejects) means the
// program compiles as without one, and the cache is written anew at exit.
//
// Coverage. The program notes the path each run took (notePath: e.g.
// 'hook createRuntime not-applicable', 'runtime run prepared'); a cache
// records the paths it holds the code of, and a run that took a path the
// cache does not hold writes it again at exit: the new cache holds what
// the old one held (deserialized) plus what this run compiled. The paths
// are few, so a cache settles after a handful of runs.
//
// File: MAGIC, source length and paths length (32-bit little-endian), the
// source, the paths (one per line), then V8's data. Written with
// lib/sys/atomic-file.ts, not fsynced: a cache lost in a crash is only
// made again.

import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, type Stats } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { Script } from 'node:vm';
import { pathHash } from './path-key';
import { writeFileAtomic } from './atomic-file';

/** Where the cache is kept by default: root's, beside other programs' caches (FHS /var/cache). */
export const DEFAULT_CODE_CACHE_DIR = '/var/cache/oci-userns';
/**
 * Names another directory (absolute) for the cache, or turns it off with
 * 'off'. Whoever sets root's environment already decides what root runs
 * (PATH for the shebang, NODE_OPTIONS): the ownership checks keep others
 * out of the directory in use, they do not vet a directory that
 * environment names.
 */
export const CODE_CACHE_ENV = 'OCI_USERNS_CODE_CACHE';

const MAGIC = Buffer.from('oci-userns code cache 1\n');
const HEADER = MAGIC.length + 8;

/** What a program file exports to its launcher. */
export interface LaunchedProgram {
  /** Runs the command in `args`; resolves with the exit code. `notePath` names the path the run took (see above). */
  start(args: string[], notePath: (path: string) => void): Promise<number>;
}

export interface CodeCache {
  /** V8's data, when a cache for this exact source was there. */
  data?: Buffer;
  /** The paths whose code it holds. */
  paths: ReadonlySet<string>;
}

/** Whether `st` is something only `uid` can change: owned by it, not writable by group or others. */
const ownedAlone = (st: Stats, uid: number) => st.uid === uid && (st.mode & 0o022) === 0;

/**
 * The cache directory if it is one only this user can change, made (0700)
 * when missing; undefined when there is none to use (off, another owner,
 * writable by others, a symlink, or it cannot be made).
 */
export function trustedCacheDir(env: NodeJS.ProcessEnv, uid: number): string | undefined {
  const dir = env[CODE_CACHE_ENV] || DEFAULT_CODE_CACHE_DIR;
  if (dir === 'off' || !isAbsolute(dir)) return undefined;
  try {
    let st = lstatSync(dir, { throwIfNoEntry: false });
    if (st === undefined) {
      mkdirSync(dir, { mode: 0o700 });
      st = lstatSync(dir);
    }
    return st.isDirectory() && ownedAlone(st, uid) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** The cache file of the program file `file` (its real path) for this V8: NAME-HASH-v8-VERSION.cache. */
export function cacheFileFor(dir: string, file: string): string {
  return join(dir, `${basename(file, '.cjs')}-${pathHash(file)}-v8-${process.versions.v8}.cache`);
}

/** The cache at `path` for `source`: its data only when the file is this user's alone and was made from these very bytes. */
export function readCodeCache(path: string, source: Buffer, uid: number): CodeCache {
  const none: CodeCache = { paths: new Set() };
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return none;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || !ownedAlone(st, uid) || st.size < HEADER) return none;
    const bytes = readFileSync(fd);
    if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) return none;
    const sourceLength = bytes.readUInt32LE(MAGIC.length);
    const pathsLength = bytes.readUInt32LE(MAGIC.length + 4);
    const pathsEnd = HEADER + sourceLength + pathsLength;
    if (pathsEnd > bytes.length || !bytes.subarray(HEADER, HEADER + sourceLength).equals(source)) return none;
    const paths = bytes.toString('utf8', HEADER + sourceLength, pathsEnd);
    return { data: bytes.subarray(pathsEnd), paths: new Set(paths === '' ? [] : paths.split('\n')) };
  } catch {
    return none;
  } finally {
    closeSync(fd);
  }
}

/** Writes the cache for `source` holding `paths`; a cache not written is only a slower next start, so failures are ignored. */
export function writeCodeCache(path: string, cache: { source: Buffer; paths: ReadonlySet<string>; data: Buffer }): void {
  const paths = Buffer.from([...cache.paths].sort().join('\n'));
  const header = Buffer.alloc(HEADER);
  MAGIC.copy(header);
  header.writeUInt32LE(cache.source.length, MAGIC.length);
  header.writeUInt32LE(paths.length, MAGIC.length + 4);
  try {
    writeFileAtomic(path, Buffer.concat([header, cache.source, paths, cache.data]), { mode: 0o600, durable: false });
  } catch {
    // a read-only or full filesystem: the program ran; the next start compiles
  }
}

/**
 * Loads the CommonJS file `file` (a real path) compiled with the code cache
 * in `dir` (trustedCacheDir; undefined: none), and returns its exports and
 * what to do at exit: write the cache when this run took paths it lacks.
 * `require` resolves what the file requires (default: a require from its
 * directory; the executable passes its own, from the same directory,
 * which costs no new one).
 */
export function loadWithCodeCache(opts: { file: string; dir: string | undefined; uid: number; require?: NodeJS.Require }): {
  exports: LaunchedProgram;
  /** Compiled from a cache (V8 took it). */
  cached: boolean;
  notePath: (path: string) => void;
  atExit: () => void;
} {
  const { file, dir, uid } = opts;
  const source = readFileSync(file);
  const cachePath = dir === undefined ? undefined : cacheFileFor(dir, file);
  // Before any cache is made or read, so that both carry and check V8's checksum (and the flag hash they are made with stays the same).
  if (cachePath !== undefined) setFlagsFromString('--verify-snapshot-checksum');
  const cache = cachePath === undefined ? { paths: new Set<string>() } : readCodeCache(cachePath, source, uid);
  // Node's CommonJS wrapper on a line of its own, so positions in stacks and source maps stay the file's.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {\n${source.toString('utf8')}\n})`, {
    filename: file,
    lineOffset: -1,
    cachedData: cache.data,
  });
  const cached = cache.data !== undefined && !script.cachedDataRejected;
  const held = cached ? cache.paths : new Set<string>();
  const taken = new Set<string>();
  const loaded = { exports: {} as LaunchedProgram };
  (script.runInThisContext() as (...args: unknown[]) => void)(loaded.exports, opts.require ?? createRequire(file), loaded, file, dirname(file));
  return {
    exports: loaded.exports,
    cached,
    notePath: (path) => taken.add(path),
    atExit: () => {
      if (cachePath === undefined || taken.size === 0 || [...taken].every((p) => held.has(p))) return;
      writeCodeCache(cachePath, { source, paths: new Set([...held, ...taken]), data: script.createCachedData() });
    },
  };
}
