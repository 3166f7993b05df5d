// Extended attribute I/O through the attr tools (getfattr/setfattr): Node
// has no xattr API; one getfattr -R reads a whole tree (see README,
// "xattrs"). Never follows
// symlinks (-h). Dumps use getfattr's text format: "# file: PATH" then
// NAME=0xHEX lines, paths with \ooo escapes. The tools start through
// child_process directly: loading execa costs more than the tools run.

import { isUtf8 } from 'node:buffer';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { errnoCode, HostError, SystemError, systemError } from '../errors';
import { escapeBytes, keyOfBytes, pathBytes } from '../sys/path-key';

export type XattrSet = Map<string, Buffer>;

/**
 * A path as getfattr prints it (one char per byte: the dump is read as
 * latin1, since getfattr escapes only control characters and the backslash
 * as \ooo and prints other bytes raw) to the path's key (path-key.ts).
 */
export function unescapePath(text: string): string {
  if (/^[\x20-\x5b\x5d-\x7e]*$/.test(text)) return text;
  const bytes: number[] = [];
  const raw = Buffer.from(text, 'latin1');
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.toString('latin1', i + 1, i + 4))) {
      bytes.push(parseInt(raw.toString('latin1', i + 1, i + 4), 8));
      i += 3;
    } else bytes.push(raw[i]!);
  }
  return keyOfBytes(Buffer.from(bytes));
}

/** Escapes a path key for a setfattr --restore file. */
export function escapePath(key: string): string {
  return escapeBytes(pathBytes(key));
}

/** Parses a getfattr -d -e hex dump, read as latin1, into path key -> name -> value. */
export function parseDump(text: string): Map<string, XattrSet> {
  const out = new Map<string, XattrSet>();
  let current: XattrSet | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = new Map();
      out.set(unescapePath(line.slice(8)), current);
    } else if (line !== '' && current) {
      const eq = line.indexOf('=');
      if (eq < 0 || !line.startsWith('0x', eq + 1)) continue;
      current.set(line.slice(0, eq), Buffer.from(line.slice(eq + 3), 'hex'));
    }
  }
  return out;
}

/** The text setfattr --restore reads. */
export function formatDump(entries: Iterable<[string, XattrSet]>): string {
  let out = '';
  for (const [path, attrs] of entries) {
    out += `# file: ${escapePath(path)}\n`;
    for (const [name, value] of attrs) out += `${name}=0x${value.toString('hex')}\n`;
    out += '\n';
  }
  return out;
}

const ENV = { ...process.env, LC_ALL: 'C' };

/** Runs an attr tool to its end; resolves with its stdout as latin1 (one char per byte), rejects with a HostError (not installed) or SystemError (its first stderr line). */
function runTool(tool: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { env: ENV, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error) => {
      if (errnoCode(error) === 'ENOENT') reject(new HostError(`${tool} is not installed`, { hint: 'install the attr package (apt-get install attr)', cause: error }));
      else reject(new SystemError(`${tool} failed: ${error.message}`, { cause: error }));
    });
    child.on('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out).toString('latin1'));
      else reject(new SystemError(`${tool} failed: ${Buffer.concat(err).toString('utf8').trim().split('\n')[0] || `exit ${code ?? signal}`}`));
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Reads the xattrs whose names match `pattern` (a getfattr -m regex) from each path; paths without any are absent. */
export async function dumpXattrs(paths: readonly string[], pattern: string): Promise<Map<string, XattrSet>> {
  if (paths.length === 0) return new Map();
  return parseDump(await runTool('getfattr', ['-h', '-d', '-m', pattern, '-e', 'hex', '--absolute-names', '--', ...paths]));
}

// Above this many entries in the root, one getfattr -R reads it all (argument size).
const SPLIT_LIMIT = 1000;

/**
 * Reads the xattrs whose names match `pattern` from every inode of a tree
 * (getfattr -R, never following symlinks); inodes without any are absent.
 * The root's children are dealt in turn to `parts` getfattr processes that
 * run at once (one per core). It enters nested mounts: the caller drops
 * what it does not walk.
 */
export async function dumpTreeXattrs(root: string, pattern: string, parts = 2): Promise<Map<string, XattrSet>> {
  const args = ['-R', '-P', '-h', '-d', '-m', pattern, '-e', 'hex', '--absolute-names', '--'];
  let names: Buffer[];
  try {
    names = readdirSync(root, { encoding: 'buffer' });
  } catch (error) {
    throw systemError('cannot read directory', root, error);
  }
  // Arguments reach a program as UTF-8, so a child whose name is not cannot be named: then the root goes whole.
  if (names.length > SPLIT_LIMIT || names.some((name) => !isUtf8(name))) return parseDump(await runTool('getfattr', [...args, root]));
  const prefix = root.endsWith('/') ? root : `${root}/`;
  const groups: string[][] = Array.from({ length: Math.max(1, Math.min(parts, names.length)) }, () => []);
  names.forEach((name, i) => groups[i % groups.length]!.push(prefix + name.toString('utf8')));
  const dumps = await Promise.all([dumpXattrs([root], pattern), ...groups.filter((g) => g.length > 0).map((g) => runTool('getfattr', [...args, ...g]).then(parseDump))]);
  return new Map(dumps.flatMap((d) => [...d]));
}

/** Writes the given xattrs (one setfattr process for all of them). */
export async function restoreXattrs(entries: Iterable<[string, XattrSet]>): Promise<void> {
  const input = formatDump(entries);
  if (input === '') return;
  await runTool('setfattr', ['-h', '--restore=-'], input);
}

export async function readXattr(path: string, name: string): Promise<Buffer | undefined> {
  const dump = await dumpXattrs([path], `^${name.replace(/\./g, '\\.')}$`);
  return dump.get(path)?.get(name);
}

export async function writeXattr(path: string, name: string, value: Buffer): Promise<void> {
  await restoreXattrs([[path, new Map([[name, value]])]]);
}
