// How the range commands (alloc, release, ranges, gc) print a registry
// entry: one line per container, host ids as the mapping's extents.

import { formatIdMap } from '../lib/oci/idmap';
import type { RangeEntry } from '../lib/ranges/ranges';

export const describeEntry = (e: RangeEntry) => `${e.id}: uids ${formatIdMap(e.uidMappings)}, gids ${formatIdMap(e.gidMappings)}`;
