// bin/oci-userns-runtime, the sh front of the runtime shim, with a fake
// runtime first on PATH and a fake program beside it that record their
// argv: which calls reach the real runtime directly, which the shim, and
// that nothing is added, dropped or reordered on the way.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const FRONT = join(import.meta.dirname, '..', '..', 'bin', 'oci-userns-runtime');
const SCHEMA = join(import.meta.dirname, '..', '..', 'schemas', 'config-file.schema.json');

let dir = '';
const record = (name: string, status: number) =>
  `#!/bin/sh\n{ printf '%s' ${name}; for a; do printf ' [%s]' "$a"; done; read -r fd3 <&3 2>/dev/null; printf '\\nfront=%s fd3=%s\\n' "$OCI_USERNS_FRONT" "$fd3"; } >"${'$'}{0%/*}/../calls"\nexit ${status}\n`;

interface Call {
  /** What answered: runtime or shim, with the argv it got, then the front's name for itself and what it read on fd 3. */
  calls: string;
  status: number | null;
}

function front(argv: string[], opts: { config?: string | object; env?: NodeJS.ProcessEnv; registry?: object; prepared?: string; cwd?: string } = {}): Call {
  rmSync(join(dir, 'calls'), { force: true });
  const config = join(dir, 'config.json');
  rmSync(config, { force: true });
  const text = opts.config ?? {};
  writeFileSync(config, typeof text === 'string' ? text : JSON.stringify(text));
  const stateDir = join(dir, 'state');
  rmSync(stateDir, { recursive: true, force: true });
  mkdirSync(stateDir);
  if (opts.registry) writeFileSync(join(stateDir, 'ranges.json'), JSON.stringify(opts.registry));
  if (opts.prepared) mkdirSync(join(stateDir, 'shim', opts.prepared), { recursive: true });
  const result = spawnSync(join(dir, 'bin', 'oci-userns-runtime'), argv, {
    env: { PATH: join(dir, 'path'), OCI_USERNS_CONFIG: config, ...opts.env },
    cwd: opts.cwd ?? dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let calls = '';
  try {
    calls = readFileSync(join(dir, 'calls'), 'utf8');
  } catch {
    calls = `nothing ran: ${result.stderr}`;
  }
  return { calls, status: result.status };
}

const setup = () => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-front-'));
  for (const d of ['bin', 'path']) mkdirSync(join(dir, d));
  symlinkSync(FRONT, join(dir, 'bin', 'oci-userns-runtime'));
  writeFileSync(join(dir, 'bin', 'oci-userns'), record('shim', 42));
  writeFileSync(join(dir, 'path', 'runc'), record('runtime', 7));
  writeFileSync(join(dir, 'path', 'crun'), record('crun', 8));
  for (const f of ['bin/oci-userns', 'path/runc', 'path/crun']) chmodSync(join(dir, f), 0o755);
};
const teardown = () => rmSync(dir, { recursive: true, force: true });

const passing = suite('front: calls that need nothing from the shim go straight to the runtime');
passing.before.each(setup);
passing.after.each(teardown);
passing('state, exec, kill, start, ps, --version: same argv, the runtime\'s exit status', () => {
  for (const argv of [['state', 'c1'], ['exec', '--preserve-fds', '1', 'c1', 'sh', '-c', 'a  b'], ['kill', 'c1', '9'], ['start', 'c1'], ['ps', 'c1'], ['--version'], ['-v'], ['--help'], []]) {
    const call = front(argv, { config: { runtime: { path: 'runc' } } });
    assert.is(call.status, 7, argv.join(' '));
    assert.is(call.calls.split('\n')[0], ['runtime', ...argv.map((a) => `[${a}]`)].join(' '));
  }
});
passing('global options with a value in every form runc and crun take: the value is never the subcommand', () => {
  for (const argv of [
    ['--root', 'create', 'state', 'c1'],
    ['-root', 'run', 'state', 'c1'],
    ['--root=/r', '--log', 'create', '--log-format', 'json', '--debug', 'state', 'c1'],
    ['--systemd-cgroup', '--cgroup-manager', 'run', '--criu', 'create', '--rootless', 'run', '--log-level', 'debug', 'state', 'c1'],
    ['--', 'state', 'c1'],
  ]) {
    assert.match(front(argv).calls, /^runtime /, argv.join(' '));
  }
});
passing('descriptors beyond stdio reach the runtime as the caller\'s own', () => {
  const config = { runtime: { path: 'runc' } };
  rmSync(join(dir, 'calls'), { force: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const result = spawnSync('/bin/sh', ['-c', `echo caller-fd3 >"${dir}/fd3"; exec "${dir}/bin/oci-userns-runtime" exec --preserve-fds 1 c1 true 3<"${dir}/fd3"`], {
    env: { PATH: join(dir, 'path'), OCI_USERNS_CONFIG: join(dir, 'config.json') },
  });
  assert.is(result.status, 7);
  assert.match(readFileSync(join(dir, 'calls'), 'utf8'), /fd3=caller-fd3$/m);
});
passing('delete of a container the registry does not name', () => {
  const registry = { version: 1, entries: [{ id: 'other', uidMappings: [], gidMappings: [] }] };
  const config = { stateDir: join(dir, 'state') };
  assert.match(front(['delete', '--force', 'c1'], { config, registry }).calls, /^runtime \[delete\] \[--force\] \[c1\]/);
  assert.match(front(['delete', 'c1'], { config }).calls, /^runtime /);
});
passing('runtime.path from the config: crun by name, an absolute path, whitespace and newlines around it', () => {
  assert.match(front(['state', 'c1'], { config: { runtime: { path: 'crun', policy: 'always' } } }).calls, /^crun /);
  assert.match(front(['state', 'c1'], { config: { runtime: { path: join(dir, 'path', 'crun') } } }).calls, /^crun /);
  assert.match(front(['state', 'c1'], { config: '{\n  "runtime": {\n    "path"\n :\t"crun"\n  }\n}\n' }).calls, /^crun /);
  assert.match(front(['state', 'c1'], { config: `{"runtime":{"path":"path/crun"}}`, cwd: dir }).calls, /^crun /);
});
passing('no config file at the default path: runc on PATH', () => {
  assert.match(front(['state', 'c1'], { env: { OCI_USERNS_CONFIG: '' } }).calls, /^runtime /);
});
passing('an empty PATH: the default PATH, as the shim does', () => {
  assert.is(front(['state', 'c1'], { config: { runtime: { path: 'false' } }, env: { PATH: '' } }).status, 1);
  assert.is(front(['state', 'c1'], { config: { runtime: { path: 'true' } }, env: { PATH: '' } }).status, 0);
});

const toShim = suite('front: calls the shim must see, and whatever the front cannot tell');
toShim.before.each(setup);
toShim.after.each(teardown);
toShim('create and run, in any global option context', () => {
  for (const argv of [['create', '--bundle', '/b', 'c1'], ['run', 'c1'], ['--root', '/r', '--log=/l', 'create', 'c1'], ['run', '--help']]) {
    const call = front(argv, { config: { runtime: { path: 'runc' } } });
    assert.is(call.status, 42, argv.join(' '));
    assert.is(call.calls.split('\n')[0], ['shim', '[runtime]', ...argv.map((a) => `[${a}]`)].join(' '));
    assert.match(call.calls, new RegExp(`front=${join(dir, 'bin', 'oci-userns-runtime')} `));
  }
});
toShim('delete of a container the registry names, or with an option the front does not know', () => {
  const registry = { version: 1, entries: [{ id: 'c1', uidMappings: [], gidMappings: [] }] };
  const config = { stateDir: join(dir, 'state') };
  assert.match(front(['delete', '--force', 'c1'], { config, registry }).calls, /^shim \[runtime\] \[delete\] \[--force\] \[c1\]/);
  assert.match(front(['delete', '--new-option', 'c2'], { config, registry }).calls, /^shim /);
  // crun's --regex: only crun can tell which ids it names; the shim compares its containers before and after.
  for (const argv of [['delete', '--regex', 'oth.*'], ['delete', '-f', '-r', 'x']]) assert.match(front(argv, { config, registry }).calls, /^shim /, argv.join(' '));
});
toShim('delete of a container the shim prepared (STATEDIR/shim/ID), registered or not: its end is the shim\'s', () => {
  const config = { stateDir: join(dir, 'state') };
  assert.match(front(['delete', 'c3'], { config, prepared: 'c3' }).calls, /^shim \[runtime\] \[delete\] \[c3\]/);
  assert.match(front(['delete', '-f', 'c3'], { config, registry: { version: 1, entries: [] }, prepared: 'c3' }).calls, /^shim /);
  assert.match(front(['delete', 'c4'], { config, prepared: 'c3' }).calls, /^runtime /);
});
toShim('kill with SIGTERM or no signal (a systemd container stops on SIGRTMIN+3); other signals and --all go straight through', () => {
  for (const argv of [['kill', 'c1'], ['kill', 'c1', 'TERM'], ['kill', 'c1', '15'], ['kill', 'c1', 'sigterm'], ['--root', '/r', 'kill', 'c1', 'SIGTERM']]) {
    assert.match(front(argv).calls, /^shim /, argv.join(' '));
  }
  for (const argv of [['kill', 'c1', 'KILL'], ['kill', 'c1', '9'], ['kill', '--all', 'c1', 'TERM'], ['kill', '-a', 'c1']]) {
    assert.match(front(argv).calls, /^runtime /, argv.join(' '));
  }
});
toShim("a global option it does not know, such as crun's abbreviations: `--cgroup systemd create` is a create", () => {
  for (const argv of [['--cgroup', 'systemd', 'create', 'c1'], ['--log-f', 'json', 'state', 'c1'], ['--deb', 'state', 'c1']]) {
    assert.match(front(argv).calls, /^shim /, argv.join(' '));
  }
});
toShim('a config the front cannot read for certain', () => {
  for (const config of ['{"runtime":{"path":"cr\\u0075n"}}', '{"runtime":{"path":"crun"},"x":{"path":"runc"}}', '{"runtime":{"path":5}}', '{"runtime":{"path":""}}']) {
    assert.match(front(['state', 'c1'], { config }).calls, /^shim /, config);
  }
  assert.match(front(['state', 'c1'], { env: { OCI_USERNS_CONFIG: join(dir, 'missing.json') } }).calls, /^shim /);
});
toShim('a runtime that is not there, or is the front itself', () => {
  assert.match(front(['state', 'c1'], { config: { runtime: { path: 'nope' } } }).calls, /^shim /);
  assert.match(front(['state', 'c1'], { config: { runtime: { path: 'oci-userns-runtime' } }, env: { PATH: `${join(dir, 'bin')}:${join(dir, 'path')}` } }).calls, /^shim /);
  assert.match(front(['state', 'c1'], { config: { runtime: { path: join(dir, 'bin', 'oci-userns') } } }).calls, /^shim /);
});

const schema = suite('front: the config keys it reads are unique in the schema');
schema('runtime.path and stateDir are the only properties named path and stateDir', () => {
  const names: string[] = [];
  const walk = (node: unknown): void => {
    if (node === null || typeof node !== 'object') return;
    const properties = (node as { properties?: Record<string, unknown> }).properties;
    if (properties) names.push(...Object.keys(properties));
    for (const value of Object.values(node)) walk(value);
  };
  walk(JSON.parse(readFileSync(SCHEMA, 'utf8')));
  assert.is(names.filter((n) => n === 'path').length, 1);
  assert.is(names.filter((n) => n === 'stateDir').length, 1);
});

passing.run();
toShim.run();
schema.run();
