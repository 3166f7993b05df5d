// Choosing a host range for a container, given the pool and the ranges in
// use. Pure: the registry (lib/ranges/registry.ts) reads the inputs and records
// the choice under its lock.
//
// A range is a block of `size` ids (a multiple of the block size) that
// starts on a block boundary, like systemd-nspawn's and the kubelet's, so
// ranges never straddle and are easy to read. The same offset serves uids
// and gids when both pools have it free. The preferred block comes from a
// hash of the container's name, so a container that comes back gets the
// range its shifted rootfs already has; when that block is taken, the
// first free one.

import { createHash } from 'node:crypto';
import { HostError, InputError } from '../errors';
import type { IdMapping } from '../oci/idmap';
import { mergeRanges, type IdRange, type Pool } from './subid';

export interface RangesInUse {
  id: string;
  uidMappings: readonly IdMapping[];
  gidMappings: readonly IdMapping[];
}

export interface ChooseOptions {
  pool: Pool;
  blockSize: number;
  /** Ids the container needs; rounded up to the block size. Default: one block. */
  size?: number;
  /** What the preferred block is derived from: the container's name, else its id. */
  key: string;
  inUse: readonly RangesInUse[];
}

export interface Choice {
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  /** The block came from the name's hash (else it was the first free one). */
  preferred: boolean;
}

const alignUp = (n: number, to: number) => Math.ceil(n / to) * to;

/** A requested size rounded up to whole blocks. */
export function blockAlignedSize(size: number | undefined, blockSize: number): number {
  if (!Number.isSafeInteger(blockSize) || blockSize <= 0) throw new InputError(`pool block size must be a positive integer, got ${blockSize}`);
  if (size === undefined) return blockSize;
  if (!Number.isSafeInteger(size) || size <= 0) throw new InputError(`range size must be a positive integer, got ${size}`);
  return alignUp(size, blockSize);
}

/** The size `--size auto` asks for: room for ids 0..highest, in whole blocks. */
export function sizeForHighestId(highest: number, blockSize: number): number {
  return blockAlignedSize(highest + 1, blockSize);
}

/** A hash of the key that does not change between versions or hosts (unlike a seeded hash). */
export function stableHash(key: string): number {
  return createHash('sha256').update(key).digest().readUIntBE(0, 6);
}

/** Ids in both lists of ranges. */
export function intersectRanges(a: readonly IdRange[], b: readonly IdRange[]): IdRange[] {
  const out: IdRange[] = [];
  for (const x of mergeRanges(a)) {
    for (const y of mergeRanges(b)) {
      const start = Math.max(x.start, y.start);
      const end = Math.min(x.start + x.count, y.start + y.count);
      if (end > start) out.push({ start, count: end - start });
    }
  }
  return mergeRanges(out);
}

function hostRangesOf(maps: ReadonlyArray<readonly IdMapping[]>): IdRange[] {
  return mergeRanges(maps.flatMap((map) => map.map((m) => ({ start: m.hostID, count: m.size }))));
}

/** Block starts in one range where a block of `size` fits. */
function blockCount(r: IdRange, size: number, blockSize: number): number {
  const first = alignUp(r.start, blockSize);
  const lastStart = r.start + r.count - size;
  return lastStart < first ? 0 : Math.floor((lastStart - first) / blockSize) + 1;
}

/** How many blocks of `size` ids, aligned to `blockSize`, fit in these ranges: what the allocator can hand out. */
export function alignedBlocks(ranges: readonly IdRange[], size: number, blockSize: number): number {
  return ranges.reduce((sum, r) => sum + blockCount(r, size, blockSize), 0);
}

function nthBlock(ranges: readonly IdRange[], size: number, blockSize: number, n: number): number {
  let left = n;
  for (const r of ranges) {
    const count = blockCount(r, size, blockSize);
    if (left < count) return alignUp(r.start, blockSize) + left * blockSize;
    left -= count;
  }
  throw new RangeError(`block ${n} is past the pool`);
}

function firstBusy(start: number, size: number, busy: readonly IdRange[]): IdRange | undefined {
  return busy.find((b) => b.start < start + size && start < b.start + b.count);
}

function firstFree(ranges: readonly IdRange[], size: number, blockSize: number, busy: readonly IdRange[]): number | undefined {
  for (const r of ranges) {
    const end = r.start + r.count;
    let start = alignUp(r.start, blockSize);
    while (start + size <= end) {
      const taken = firstBusy(start, size, busy);
      if (!taken) return start;
      start = alignUp(taken.start + taken.count, blockSize);
    }
  }
  return undefined;
}

function pick(ranges: readonly IdRange[], busy: readonly IdRange[], size: number, blockSize: number, hash: number): { start: number; preferred: boolean } | undefined {
  const total = alignedBlocks(ranges, size, blockSize);
  if (total === 0) return undefined;
  const preferred = nthBlock(ranges, size, blockSize, hash % total);
  if (!firstBusy(preferred, size, busy)) return { start: preferred, preferred: true };
  const start = firstFree(ranges, size, blockSize, busy);
  return start === undefined ? undefined : { start, preferred: false };
}

const formatRanges = (ranges: readonly IdRange[]) => ranges.map((r) => `${r.start}-${r.start + r.count - 1}`).join(', ');

function exhausted(opts: ChooseOptions, size: number): HostError {
  const { pool } = opts;
  // Only what takes ids from this pool: the host-wide scan also brings holders outside it.
  const inPool = (u: RangesInUse) => intersectRanges(hostRangesOf([u.uidMappings]), pool.uids).length > 0 || intersectRanges(hostRangesOf([u.gidMappings]), pool.gids).length > 0;
  const inUse = opts.inUse.filter(inPool);
  const shown = inUse.slice(0, 8).map((u) => `${u.id} (uids ${formatRanges(hostRangesOf([u.uidMappings]))})`);
  const more = inUse.length > shown.length ? ` and ${inUse.length - shown.length} more` : '';
  const used = inUse.length === 0 ? 'nothing is in use' : `in use by ${inUse.length} container${inUse.length === 1 ? '' : 's'}: ${shown.join(', ')}${more}`;
  return new HostError(
    `pool '${pool.user}' has no free block of ${size} ids (uids ${formatRanges(pool.uids)} from ${pool.subuidFile}, gids ${formatRanges(pool.gids)} from ${pool.subgidFile}); ${used}`,
    { hint: `release the ranges of containers that are gone (oci-userns gc), or give '${pool.user}' more ids in ${pool.subuidFile} and ${pool.subgidFile}` },
  );
}

export function chooseRange(opts: ChooseOptions): Choice {
  const { pool, blockSize, inUse } = opts;
  const size = blockAlignedSize(opts.size, blockSize);
  const hash = stableHash(opts.key);
  const uidBusy = hostRangesOf(inUse.map((u) => u.uidMappings));
  const gidBusy = hostRangesOf(inUse.map((u) => u.gidMappings));
  const mapping = (start: number): IdMapping[] => [{ containerID: 0, hostID: start, size }];

  const both = pick(intersectRanges(pool.uids, pool.gids), mergeRanges([...uidBusy, ...gidBusy]), size, blockSize, hash);
  if (both) return { uidMappings: mapping(both.start), gidMappings: mapping(both.start), preferred: both.preferred };

  const uid = pick(pool.uids, uidBusy, size, blockSize, hash);
  const gid = pick(pool.gids, gidBusy, size, blockSize, hash);
  if (!uid || !gid) throw exhausted(opts, size);
  return { uidMappings: mapping(uid.start), gidMappings: mapping(gid.start), preferred: uid.preferred && gid.preferred };
}
