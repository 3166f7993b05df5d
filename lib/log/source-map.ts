// Stacks that name the source files (lib/..., cli/...) when running the
// build in dist/, at no cost to a start that throws nothing. Node's own
// source map support (--enable-source-maps, process.setSourceMapsEnabled)
// reads and parses the maps of every file it loads: measured, 11 ms more
// on the hook's no-op path (bench/hook.ts), 15% of the whole. Here a map is
// read only when a stack that goes through its file is formatted.

import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, resolve } from 'node:path';

const maps = new Map<string, SourceMap | undefined>();

function mapOf(file: string): SourceMap | undefined {
  if (!maps.has(file)) {
    let map: SourceMap | undefined;
    try {
      map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8')));
    } catch {
      map = undefined; // no map beside it (not ours, or removed): the bundle position stays
    }
    maps.set(file, map);
  }
  return maps.get(file);
}

/** A call site as the default stack prints it, its position in a bundle replaced by the source position. */
function frame(site: NodeJS.CallSite): string {
  const text = `    at ${String(site)}`;
  const file = site.getFileName();
  const line = site.getLineNumber();
  const column = site.getColumnNumber();
  if (!file?.endsWith('.cjs') || line === null || column === null) return text;
  const origin = mapOf(file)?.findOrigin(line, column);
  if (!origin || !('fileName' in origin)) return text;
  return text.replace(`${file}:${line}:${column}`, `${resolve(dirname(file), origin.fileName)}:${origin.lineNumber}:${origin.columnNumber}`);
}

/** From now on, error stacks that pass through a .cjs file with a .map beside it name the sources. */
export function mapStacksToSources(): void {
  Error.prepareStackTrace = (error: Error, sites: NodeJS.CallSite[]) => [Error.prototype.toString.call(error), ...sites.map(frame)].join('\n');
}
