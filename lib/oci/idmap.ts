// ID mappings in the form of the OCI runtime spec (linux.uidMappings and
// linux.gidMappings): a list of extents, each mapping `size` consecutive
// container ids starting at `containerID` to host ids starting at `hostID`.
// Pure functions only; nothing here touches the system.

import { InputError } from '../errors';

export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export type IdMap = readonly IdMapping[];

const MAX_ID = 0xffffffff; // ids are 32-bit; (uid_t)-1 is never a valid id

/** The overflow id the kernel shows for an unmapped id (nobody). */
export const OVERFLOW_ID = 65534;

/**
 * Checks that a mapping is well formed: integer fields, non-empty extents,
 * ids inside 32 bits, and no two extents overlapping on either side (the
 * kernel refuses such a map). Returns the extents sorted by containerID.
 */
export function validateIdMap(map: IdMap, what = 'mapping'): IdMapping[] {
  const sorted = [...map].sort((a, b) => a.containerID - b.containerID);
  for (const m of sorted) {
    for (const key of ['containerID', 'hostID', 'size'] as const) {
      if (!Number.isInteger(m[key]) || m[key] < 0) {
        throw new InputError(`${what}: ${key} must be a non-negative integer, got ${JSON.stringify(m[key])}`);
      }
    }
    if (m.size === 0) throw new InputError(`${what}: extent ${formatExtent(m)} has size 0`);
    if (m.containerID + m.size > MAX_ID || m.hostID + m.size > MAX_ID) {
      throw new InputError(`${what}: extent ${formatExtent(m)} goes past the largest id ${MAX_ID - 1}`);
    }
  }
  for (const side of ['containerID', 'hostID'] as const) {
    const bySide = [...sorted].sort((a, b) => a[side] - b[side]);
    for (let i = 1; i < bySide.length; i++) {
      const prev = bySide[i - 1]!;
      const cur = bySide[i]!;
      if (prev[side] + prev.size > cur[side]) {
        throw new InputError(`${what}: extents ${formatExtent(prev)} and ${formatExtent(cur)} overlap on the ${side === 'hostID' ? 'host' : 'container'} side`);
      }
    }
  }
  return sorted;
}

/** Host id of a container id, or undefined when the id is not mapped. */
export function toHost(map: IdMap, containerId: number): number | undefined {
  for (const m of map) {
    if (containerId >= m.containerID && containerId < m.containerID + m.size) {
      return m.hostID + (containerId - m.containerID);
    }
  }
  return undefined;
}

/** Container id of a host id, or undefined when the host id is not in the map. */
export function toContainer(map: IdMap, hostId: number): number | undefined {
  for (const m of map) {
    if (hostId >= m.hostID && hostId < m.hostID + m.size) {
      return m.containerID + (hostId - m.hostID);
    }
  }
  return undefined;
}

/** The identity mapping of every id: what a tree owned by host root has. */
export const IDENTITY: IdMap = Object.freeze([{ containerID: 0, hostID: 0, size: MAX_ID }]);

export function isIdentity(map: IdMap): boolean {
  return map.every((m) => m.containerID === m.hostID);
}

export function sameIdMap(a: IdMap, b: IdMap): boolean {
  const sa = [...a].sort((x, y) => x.containerID - y.containerID);
  const sb = [...b].sort((x, y) => x.containerID - y.containerID);
  return sa.length === sb.length && sa.every((m, i) => m.containerID === sb[i]!.containerID && m.hostID === sb[i]!.hostID && m.size === sb[i]!.size);
}

/** Total number of container ids a map covers. */
export function idMapSize(map: IdMap): number {
  return map.reduce((sum, m) => sum + m.size, 0);
}

/** Host ranges [start, end) covered by a map, sorted. */
export function hostRanges(map: IdMap): Array<[number, number]> {
  return map.map((m): [number, number] => [m.hostID, m.hostID + m.size]).sort((a, b) => a[0] - b[0]);
}

/** True when some host id is in both maps. */
export function hostRangesOverlap(a: IdMap, b: IdMap): boolean {
  return a.some((x) => b.some((y) => x.hostID < y.hostID + y.size && y.hostID < x.hostID + x.size));
}

export function formatExtent(m: IdMapping): string {
  return `${m.containerID}:${m.hostID}:${m.size}`;
}

export function formatIdMap(map: IdMap): string {
  return map.map(formatExtent).join(',');
}

/**
 * Parses the `C:H:S[,C:H:S...]` form used on the command line (the same
 * extents as the OCI mappings, and as newuidmap takes them).
 */
export function parseIdMap(text: string, what = 'mapping'): IdMapping[] {
  const trimmed = text.trim();
  if (trimmed === '') throw new InputError(`${what}: empty; expected CONTAINERID:HOSTID:SIZE[,...]`);
  const map = trimmed.split(',').map((part) => {
    const fields = part.trim().split(':');
    if (fields.length !== 3 || fields.some((f) => !/^\d+$/.test(f))) {
      throw new InputError(`${what}: '${part}' is not CONTAINERID:HOSTID:SIZE`);
    }
    const [containerID, hostID, size] = fields.map(Number) as [number, number, number];
    return { containerID, hostID, size };
  });
  return validateIdMap(map, what);
}

/**
 * The mapping that takes a tree from one ownership to another: an inode
 * owned by host id h (shown in the container of `from` as c = from^-1(h))
 * becomes to(c). Returns the function; undefined for ids `from` does not map.
 */
export function composeShift(from: IdMap, to: IdMap): (hostId: number) => number | undefined {
  return (hostId) => {
    const c = toContainer(from, hostId);
    return c === undefined ? undefined : toHost(to, c);
  };
}

/**
 * Parses /proc/<pid>/uid_map or gid_map ("containerID hostID size" per
 * line), for containers that join an existing user namespace and so carry
 * no mappings in their spec.
 */
export function parseProcIdMap(text: string, what = 'id map'): IdMapping[] {
  const map = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const fields = line.split(/\s+/);
      if (fields.length !== 3 || fields.some((f) => !/^\d+$/.test(f))) throw new InputError(`${what}: malformed line '${line}'`);
      const [containerID, hostID, size] = fields.map(Number) as [number, number, number];
      return { containerID, hostID, size };
    });
  return validateIdMap(map, what);
}
