// Which id each inode gets when a tree moves from one mapping to another,
// and in how many steps. Pure.
//
// Crash safety rests on one rule: within a step, the host ids the tree may
// hold before (S, the old mapping's image of the container ids both
// mappings cover) and after (D, the new mapping's image of the same ids)
// never overlap. Then every id tells its own state: in D it is done, in S
// it still has to move, in neither it is unmapped. A rerun after a kill
// needs no per-inode log. When S and D would overlap (a move by less than
// the range size, or onto ids the tree uses now), the move goes through an
// intermediate range disjoint from both, as two such steps.

import { RefusedError } from '../errors';
import { OVERFLOW_ID, toContainer, toHost, type IdMap, type IdMapping } from '../oci/idmap';
import type { UnmappedPolicy } from '../config/config';

export interface Step {
  uid: { from: IdMap; to: IdMap };
  gid: { from: IdMap; to: IdMap };
}

type Range = [start: number, end: number];

/** Container-id intervals that both maps cover. */
function commonDomain(a: IdMap, b: IdMap): Range[] {
  const out: Range[] = [];
  for (const x of a) {
    for (const y of b) {
      const start = Math.max(x.containerID, y.containerID);
      const end = Math.min(x.containerID + x.size, y.containerID + y.size);
      if (start < end) out.push([start, end]);
    }
  }
  return out.sort((p, q) => p[0] - q[0]);
}

/** Host intervals a map gives the container intervals. */
function image(map: IdMap, domain: Range[]): Range[] {
  const out: Range[] = [];
  for (const [start, end] of domain) {
    for (const m of map) {
      const s = Math.max(start, m.containerID);
      const e = Math.min(end, m.containerID + m.size);
      if (s < e) out.push([m.hostID + (s - m.containerID), m.hostID + (e - m.containerID)]);
    }
  }
  return out.sort((p, q) => p[0] - q[0]);
}

function rangesOverlap(a: Range[], b: Range[]): boolean {
  return a.some(([s1, e1]) => b.some(([s2, e2]) => s1 < e2 && s2 < e1));
}

function inRanges(ranges: Range[], id: number): boolean {
  for (const [s, e] of ranges) if (id >= s && id < e) return true;
  return false;
}

export interface SideRule {
  /** The host id an inode with this id gets; equal to id when already done; undefined when unmapped under the 'error' policy. */
  map(id: number): number | undefined;
  /** True when the id is already in the target range (done by this step, or by a killed run of it). */
  done(id: number): boolean;
  /** Host id of a container id in the target mapping. */
  target(containerId: number): number | undefined;
  /** Container id of a host id in the source mapping. */
  source(hostId: number): number | undefined;
  /** What map() does, as data a walker thread can take: see ruleTable. */
  table: number[];
  /** The id an unmapped id gets, or undefined under the 'error' policy. */
  overflow: number | undefined;
}

/**
 * The per-id rule of a step as flat [start, end, delta] triples of host ids:
 * the done ranges (delta 0) first, then the source ranges. An id in no
 * triple is unmapped.
 */
export function ruleTable(from: IdMap, to: IdMap): number[] {
  const out: number[] = [];
  for (const [s, e] of image(to, commonDomain(from, to))) out.push(s, e, 0);
  for (const f of from) {
    for (const t of to) {
      const s = Math.max(f.containerID, t.containerID);
      const e = Math.min(f.containerID + f.size, t.containerID + t.size);
      if (s < e) out.push(f.hostID + (s - f.containerID), f.hostID + (e - f.containerID), t.hostID - t.containerID - (f.hostID - f.containerID));
    }
  }
  return out;
}

/** The id ruleTable gives id, or undefined when unmapped. */
export function lookupRule(table: readonly number[], id: number): number | undefined {
  for (let i = 0; i < table.length; i += 3) if (id >= table[i]! && id < table[i + 1]!) return id + table[i + 2]!;
  return undefined;
}

export function sideRule(from: IdMap, to: IdMap, unmapped: UnmappedPolicy): SideRule {
  const done = image(to, commonDomain(from, to));
  const table = ruleTable(from, to);
  const overflow = unmapped === 'overflow' ? (toHost(to, OVERFLOW_ID) ?? OVERFLOW_ID) : undefined;
  return {
    map: (id) => lookupRule(table, id) ?? overflow,
    done: (id) => inRanges(done, id),
    target: (c) => toHost(to, c),
    source: (h) => toContainer(from, h),
    table,
    overflow,
  };
}

/** True when a single step from `from` to `to` keeps source and target ids apart. */
export function stepIsSafe(from: IdMap, to: IdMap): boolean {
  const domain = commonDomain(from, to);
  return !rangesOverlap(image(from, domain), image(to, domain));
}

const TOP = 0xfffffffe; // (uid_t)-1 and -2 are never owners

/** A map of the common domain onto host ids disjoint from both sides' ranges, or undefined. */
function intermediate(from: IdMap, to: IdMap): IdMapping[] | undefined {
  const domain = commonDomain(from, to);
  const size = domain.reduce((n, [s, e]) => n + (e - s), 0);
  const busy = [...image(from, domain), ...image(to, domain), [OVERFLOW_ID, OVERFLOW_ID + 1] as Range];
  const candidates = [TOP - size, 0x80000000, 0x40000000, ...busy.map(([, e]) => e)];
  for (const base of candidates) {
    if (base < 0 || base + size > TOP) continue;
    if (rangesOverlap([[base, base + size]], busy)) continue;
    let next = base;
    return domain.map(([s, e]) => {
      const m = { containerID: s, hostID: next, size: e - s };
      next += e - s;
      return m;
    });
  }
  return undefined;
}

/** The steps from the recorded mapping to the target, each with disjoint source and target ids. */
export function planSteps(from: { uid: IdMap; gid: IdMap }, to: { uid: IdMap; gid: IdMap }): Step[] {
  const direct: Step = { uid: { from: from.uid, to: to.uid }, gid: { from: from.gid, to: to.gid } };
  if (stepIsSafe(from.uid, to.uid) && stepIsSafe(from.gid, to.gid)) return [direct];
  const viaUid = intermediate(from.uid, to.uid);
  const viaGid = intermediate(from.gid, to.gid);
  if (!viaUid || !viaGid) {
    throw new RefusedError('cannot shift the tree: the old and new ranges overlap and no free host range is large enough to move through', {
      hint: 'shift to a range that does not overlap the current one, or unshift first',
    });
  }
  return [
    { uid: { from: from.uid, to: viaUid }, gid: { from: from.gid, to: viaGid } },
    { uid: { from: viaUid, to: to.uid }, gid: { from: viaGid, to: to.gid } },
  ];
}
