// `oci-userns ranges`: the registered host id ranges as a table (or JSON),
// over lib/ranges/ranges.ts.

import type { CommandModule } from 'yargs';
import type { IdMapping } from '../lib/oci/idmap';
import { listRanges, type RangeEntry } from '../lib/ranges/ranges';
import { loadConfig, print, printJson, type GlobalArgs } from './context';

const hostRange = (map: readonly IdMapping[]) => map.map((m) => `${m.hostID}-${m.hostID + m.size - 1}`).join(',');

/** The `ranges` table: one row per container, host ids as first-last. */
export function formatRangesTable(entries: readonly RangeEntry[]): string {
  if (entries.length === 0) return 'no ranges registered';
  const rows = [['ID', 'UIDS', 'GIDS', 'SINCE', 'SOURCE'], ...entries.map((e) => [e.id, hostRange(e.uidMappings), hostRange(e.gidMappings), e.since, e.source])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

const ranges: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'ranges',
  describe: 'List the registered host id ranges: id, uids, gids, since, source',
  handler: async (args) => {
    const config = await loadConfig(args);
    const entries = await listRanges({ stateDir: config.stateDir });
    if (args.json) printJson(entries);
    else print(formatRangesTable(entries));
  },
};

export default ranges;
