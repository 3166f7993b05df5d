// /etc/subuid and /etc/subgid (subuid(5)): "owner:start:count" per line,
// the owner a user name or a numeric uid, several lines per owner allowed.
// Parsing is strict, because a range misread here is handed to containers:
// a malformed line stops the program with the file and line number.

import { readFileSync } from 'node:fs';
import type { PoolConfig } from '../config/config';
import { errnoCode, HostError, InputError, systemError } from '../errors';
import type { Logger } from '../log/logger';

/** Host ids [start, start + count). */
export interface IdRange {
  start: number;
  count: number;
}

export interface SubidEntry extends IdRange {
  owner: string;
  /** 1-based line number, for messages. */
  line: number;
}

/** The ids of one kind (uid or gid) that the pool user may hand out, merged and sorted. */
export interface Pool {
  /** The pool user as configured (name or numeric uid). */
  user: string;
  uids: IdRange[];
  gids: IdRange[];
  subuidFile: string;
  subgidFile: string;
}

// Ids are 32-bit and (uid_t)-1 is never an id, so a range ends at 2^32 - 1 at most.
const ID_LIMIT = 0xffffffff;

export function parseSubid(text: string, file: string): SubidEntry[] {
  const entries: SubidEntry[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const fields = trimmed.split(':');
    const bad = (why: string) =>
      new InputError(`${file} line ${line}: ${why}: '${trimmed}'`, { path: file, hint: 'each line must be OWNER:START:COUNT (see subuid(5))' });
    if (fields.length !== 3) throw bad(`expected 3 fields, found ${fields.length}`);
    const [owner, start, count] = fields as [string, string, string];
    if (owner === '' || /\s/.test(owner)) throw bad('the owner must be a user name or a uid');
    if (!/^\d+$/.test(start) || !/^\d+$/.test(count)) throw bad('start and count must be decimal numbers');
    const entry = { owner, start: Number(start), count: Number(count), line };
    if (entry.count === 0) throw bad('count is 0');
    if (entry.start + entry.count > ID_LIMIT) throw bad(`the range goes past the largest id ${ID_LIMIT - 1}`);
    entries.push(entry);
  });
  return entries;
}

/** Sorted, with overlapping and touching ranges joined. */
export function mergeRanges(ranges: readonly IdRange[]): IdRange[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  const merged: IdRange[] = [];
  for (const r of sorted) {
    const last = merged[merged.length - 1];
    if (last && r.start <= last.start + last.count) {
      last.count = Math.max(last.count, r.start + r.count - last.start);
    } else {
      merged.push({ start: r.start, count: r.count });
    }
  }
  return merged;
}

/** The parts of `ranges` outside every range of `holes`. */
export function subtractRanges(ranges: readonly IdRange[], holes: readonly IdRange[]): IdRange[] {
  let result = mergeRanges(ranges);
  for (const hole of mergeRanges(holes)) {
    const holeEnd = hole.start + hole.count;
    result = result.flatMap((r) => {
      const end = r.start + r.count;
      if (holeEnd <= r.start || hole.start >= end) return [r];
      const parts: IdRange[] = [];
      if (hole.start > r.start) parts.push({ start: r.start, count: hole.start - r.start });
      if (holeEnd < end) parts.push({ start: holeEnd, count: end - holeEnd });
      return parts;
    });
  }
  return result;
}

/** The names an owner field may use for a user: its name and its uid, when /etc/passwd knows both. */
export function ownerAliases(user: string, passwd: string | undefined): Set<string> {
  const aliases = new Set([user]);
  for (const line of (passwd ?? '').split('\n')) {
    const [name, , uid] = line.split(':');
    if (name === undefined || uid === undefined || !/^\d+$/.test(uid)) continue;
    if (name === user) aliases.add(uid);
    if (uid === user) aliases.add(name);
  }
  return aliases;
}

/**
 * The pool user's ranges in one file. Ranges other owners also hold are
 * left out (and reported): those owners can map the ids with newuidmap,
 * so a container given them would not be isolated from their namespaces.
 */
export function poolRanges(entries: readonly SubidEntry[], aliases: ReadonlySet<string>): { ranges: IdRange[]; shared: SubidEntry[] } {
  const mine = entries.filter((e) => aliases.has(e.owner));
  const others = entries.filter((e) => !aliases.has(e.owner));
  const merged = mergeRanges(mine);
  const shared = others.filter((o) => merged.some((m) => o.start < m.start + m.count && m.start < o.start + o.count));
  return { ranges: subtractRanges(merged, shared), shared };
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw systemError('cannot read', path, error);
  }
}

export interface ReadPoolOptions {
  pool: PoolConfig;
  /** Maps the pool user between name and uid; default /etc/passwd. */
  passwdFile?: string;
  logger?: Logger;
}

/** Reads the pool user's subordinate uids and gids; a pool with no ids at all is a HostError. */
export async function readPool(opts: ReadPoolOptions): Promise<Pool> {
  const { pool, logger } = opts;
  const aliases = ownerAliases(pool.user, readOptional(opts.passwdFile ?? '/etc/passwd'));
  const read = (file: string, kind: string): IdRange[] => {
    const text = readOptional(file);
    const fix = `add a range for it, as podman --userns=auto expects: echo '${pool.user}:2147483647:2147483648' >> ${file}`;
    if (text === undefined) throw new HostError(`${file} does not exist, so pool user '${pool.user}' has no subordinate ${kind}s`, { path: file, hint: fix });
    const { ranges, shared } = poolRanges(parseSubid(text, file), aliases);
    for (const s of shared) {
      logger?.warn(`${file} line ${s.line}: ${s.owner} also holds ${kind}s ${s.start}-${s.start + s.count - 1} of pool '${pool.user}'; they are not allocated`, { path: file });
    }
    if (ranges.length === 0) throw new HostError(`${file} has no ${kind}s for pool user '${pool.user}'`, { path: file, hint: fix });
    return ranges;
  };
  return { user: pool.user, uids: read(pool.subuidFile, 'uid'), gids: read(pool.subgidFile, 'gid'), subuidFile: pool.subuidFile, subgidFile: pool.subgidFile };
}
