// Reading a runc or crun command line the way those runtimes do, so the
// shim knows the subcommand, and for create/run the bundle and container
// id, without changing a byte of what it hands over. Pure.
//
// runc parses with Go's flag package (one or two dashes, `--flag value` or
// `--flag=value`); crun with argp (long options with `=` or a separate
// value, short options with the value attached or separate, options after
// the positional arguments too). The tables below are the union of both.

import { isAbsolute, resolve } from 'node:path';

/** Options before the subcommand. Those not in the table are assumed to take no value. */
const GLOBAL_FLAGS: FlagTable = {
  value: ['root', 'log', 'log-format', 'log-level', 'criu', 'rootless', 'cgroup-manager'],
  short: {},
  // crun 1.8's (crun --help; --log-level from later releases): runc's --criu is none of them.
  crunLong: ['cgroup-manager', 'debug', 'log', 'log-format', 'log-level', 'root', 'rootless', 'systemd-cgroup', 'help', 'usage', 'version'],
};

/** create and run (runc 1.1 and crun 1.8). */
const CREATE_FLAGS: FlagTable = {
  value: ['bundle', 'console-socket', 'pid-file', 'preserve-fds', 'config'],
  short: { b: 'bundle', f: 'config', d: 'detach' },
};

/**
 * exec (runc 1.1 and crun 1.8). Its options end at the container id: what
 * follows is the command to run, options and all.
 */
const EXEC_FLAGS: FlagTable = {
  value: ['console-socket', 'cwd', 'env', 'user', 'additional-gids', 'process', 'pid-file', 'process-label', 'apparmor', 'cap', 'preserve-fds', 'cgroup'],
  short: { e: 'env', u: 'user', g: 'additional-gids', p: 'process', c: 'cap', t: 'tty', d: 'detach' },
};

/** delete (crun's -f is --force here, not --config). */
const DELETE_FLAGS: FlagTable = {
  value: [],
  short: { f: 'force', r: 'regex' },
};

/** Every other subcommand: only the container id is of interest, for the log. */
const OTHER_FLAGS: FlagTable = { value: [], short: {} };

interface FlagTable {
  /** Long names that take a value. */
  value: string[];
  /** Short letter to long name. */
  short: Record<string, string>;
  /** crun's long options at this level, when known: the names argp abbreviates among (default: every name here). */
  crunLong?: string[];
}

export interface RuntimeArgs {
  /** create, start, delete, ...; undefined for `--version`, `--help`, or nothing. */
  command?: string;
  /** Global options by long name (`true` for those without a value). */
  global: Record<string, string | true>;
  /** The subcommand's options by long name. */
  options: Record<string, string | true>;
  /** Arguments after the subcommand that are not options. */
  positionals: string[];
  /** The container the subcommand is about: its one positional argument. */
  containerId?: string;
  /** create/run: the bundle directory, absolute (default: the current directory). */
  bundle?: string;
  /** create/run: the spec file, absolute (crun's --config, relative to the current directory; default BUNDLE/config.json). */
  specPath?: string;
  /** Options not in the tables, by name: the id may have been taken for a value. */
  unknown: string[];
}

const tableFor = (command: string | undefined): FlagTable => {
  if (command === 'create' || command === 'run') return CREATE_FLAGS;
  if (command === 'delete') return DELETE_FLAGS;
  if (command === 'exec') return EXEC_FLAGS;
  return OTHER_FLAGS;
};

interface Parsed {
  options: Record<string, string | true>;
  positionals: string[];
  unknown: string[];
  /** Index after the first positional (the subcommand, at the global level). */
  stop: number;
}

/** Options of runc or crun that take no value (so they are not "unknown"). */
const BOOLEAN_FLAGS = ['debug', 'systemd-cgroup', 'help', 'usage', 'version', 'no-pivot', 'no-new-keyring', 'no-subreaper', 'detach', 'keep', 'force', 'regex', 'all', 'tty', 'no-new-privs', 'ignore-paused'];
const BOOLEAN_SHORT: Record<string, string> = { h: 'help', '?': 'help', v: 'version', V: 'version', a: 'all' };

/**
 * The long option `name` abbreviates: crun's argp takes any prefix of one
 * long option (argp(3): "long options may be abbreviated as long as the
 * abbreviation is unique"), so `--cgroup systemd` is `--cgroup-manager
 * systemd` and its value must not be taken for the subcommand. An exact
 * name, an ambiguous prefix or no match is left as it is (runc's flag
 * package takes no abbreviation: it refuses the call itself).
 */
function unabbreviated(name: string, table: FlagTable): string {
  const names = new Set(table.crunLong ?? [...table.value, ...BOOLEAN_FLAGS, ...Object.values(table.short)]);
  if (names.has(name) || name === '') return name;
  const matches = [...names].filter((long) => long.startsWith(name));
  return matches.length === 1 ? matches[0]! : name;
}

/**
 * Reads options from argv[start..] per the table. With `stopAtPositional`
 * (the global level) it stops at the first positional, the subcommand.
 */
function parseOptions(argv: readonly string[], start: number, table: FlagTable, stopAtPositional: boolean): Parsed {
  const options: Record<string, string | true> = {};
  const positionals: string[] = [];
  const unknown: string[] = [];
  const isLongName = (name: string) => table.value.includes(name) || BOOLEAN_FLAGS.includes(name) || Object.values(table.short).includes(name);
  let i = start;
  while (i < argv.length) {
    const arg = argv[i]!;
    i += 1;
    if (arg === '--') {
      positionals.push(...argv.slice(i));
      i = argv.length;
      break;
    }
    if (arg === '-' || !arg.startsWith('-')) {
      positionals.push(arg);
      if (stopAtPositional) break;
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    let name = eq === -1 ? body : body.slice(0, eq);
    let inline = eq === -1 ? undefined : body.slice(eq + 1);
    // One dash: Go's flag package reads -root as --root; argp reads -bDIR as -b DIR, and -fr as -f -r.
    if (!arg.startsWith('--') && !isLongName(name)) {
      let at = 0;
      for (;;) {
        const letter = body[at]!;
        name = table.short[letter] ?? BOOLEAN_SHORT[letter] ?? letter;
        const rest = body.slice(at + 1);
        if (rest === '' || table.value.includes(name)) {
          inline = table.value.includes(name) && rest !== '' ? rest.replace(/^=/, '') : undefined;
          break;
        }
        if (!isLongName(name)) unknown.push(name);
        options[name] = true;
        at += 1;
      }
    }
    if (arg.startsWith('--')) name = unabbreviated(name, table);
    if (table.value.includes(name)) {
      if (inline === undefined) {
        inline = argv[i];
        i += 1;
      }
      if (inline !== undefined) options[name] = inline;
      continue;
    }
    if (!isLongName(name)) unknown.push(name);
    options[name] = inline ?? true;
  }
  return { options, positionals, unknown, stop: i };
}

/** Parses a runtime command line; `cwd` resolves a relative or missing bundle. */
export function parseRuntimeArgs(argv: readonly string[], cwd: string): RuntimeArgs {
  const global = parseOptions(argv, 0, GLOBAL_FLAGS, true);
  const command = global.positionals[0];
  const result: RuntimeArgs = { command, global: global.options, options: {}, positionals: [], unknown: [...global.unknown] };
  if (command === undefined) return result;
  const sub = parseOptions(argv, global.stop, tableFor(command), command === 'exec');
  result.options = sub.options;
  result.positionals = command === 'exec' ? [...sub.positionals, ...argv.slice(sub.stop)] : sub.positionals;
  result.unknown.push(...sub.unknown);
  if (sub.positionals.length === 1) result.containerId = sub.positionals[0];
  if (command === 'create' || command === 'run') {
    const bundle = typeof sub.options.bundle === 'string' && sub.options.bundle !== '' ? sub.options.bundle : '.';
    result.bundle = absolute(bundle, cwd);
    result.specPath = typeof sub.options.config === 'string' ? absolute(sub.options.config, cwd) : resolve(result.bundle, 'config.json');
  }
  return result;
}

const absolute = (path: string, cwd: string) => (isAbsolute(path) ? resolve(path) : resolve(cwd, path));

/**
 * How many descriptors beyond stdio (3, 4, ...) the caller hands the
 * runtime for the container: `--preserve-fds N` for create, run and exec,
 * plus $LISTEN_FDS for create and run (runc's rule: utils_linux.go
 * `runner`, exec.go). Each of them must reach the runtime as the caller's
 * own: one left out is filled by a descriptor of the runtime's, which
 * then leaks into the container (runc's CVE-2024-21626 was such an fd).
 */
export function extraFdCount(args: RuntimeArgs, env: NodeJS.ProcessEnv): number {
  const count = (n: number) => (Number.isSafeInteger(n) && n > 0 ? n : 0);
  const preserve = args.command === 'create' || args.command === 'run' || args.command === 'exec' ? count(Number(args.options['preserve-fds'] ?? 0)) : 0;
  const listen = args.command === 'create' || args.command === 'run' ? count(Number(env.LISTEN_FDS ?? 0)) : 0;
  return preserve + listen;
}
