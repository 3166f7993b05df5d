import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { extraFdCount, parseRuntimeArgs } from '../../lib/shim/args';

const CWD = '/work/cwd';
const ID = '719e50a65c85a5a917f59d4e2c1136ae14b3140067b7518419032eeba3119dc6';
const USERDATA = `/var/lib/containers/storage/overlay-containers/${ID}/userdata`;

const engines = suite('parseRuntimeArgs: command lines engines send');
engines('podman 4.3 through conmon: create', () => {
  const args = parseRuntimeArgs(['create', '--bundle', USERDATA, '--pid-file', `/run/containers/storage/overlay-containers/${ID}/userdata/pidfile`, ID], CWD);
  assert.is(args.command, 'create');
  assert.is(args.containerId, ID);
  assert.is(args.bundle, USERDATA);
  assert.is(args.specPath, `${USERDATA}/config.json`);
  assert.equal(args.unknown, []);
});
engines('podman 4.3: start, kill with a signal, delete --force', () => {
  assert.equal(parseRuntimeArgs(['start', ID], CWD).containerId, ID);
  const kill = parseRuntimeArgs(['kill', ID, '37'], CWD);
  assert.is(kill.command, 'kill');
  assert.equal(kill.positionals, [ID, '37']);
  const del = parseRuntimeArgs(['delete', '--force', ID], CWD);
  assert.is(del.command, 'delete');
  assert.is(del.containerId, ID);
  assert.is(del.options.force, true);
});
engines('containerd runc shim: global --root/--log/--log-format and --systemd-cgroup before create', () => {
  const args = parseRuntimeArgs(
    ['--root', '/run/containerd/runc/k8s.io', '--log', '/run/containerd/x/log.json', '--log-format', 'json', '--systemd-cgroup', 'create', '--bundle', '/run/containerd/bundle', '--pid-file', '/run/containerd/bundle/init.pid', '--console-socket', '/tmp/pty.sock', 'abc'],
    CWD,
  );
  assert.equal(args.global, { root: '/run/containerd/runc/k8s.io', log: '/run/containerd/x/log.json', 'log-format': 'json', 'systemd-cgroup': true });
  assert.is(args.command, 'create');
  assert.is(args.containerId, 'abc');
  assert.is(args.bundle, '/run/containerd/bundle');
  assert.is(args.options['console-socket'], '/tmp/pty.sock');
});
engines('CRI-O style: --root then --systemd-cgroup then create with --no-new-keyring', () => {
  const args = parseRuntimeArgs(['--systemd-cgroup', '--root=/run/runc', 'create', '--bundle', '/b', '--no-new-keyring', '--pid-file', '/b/pid', 'c1'], CWD);
  assert.is(args.global.root, '/run/runc');
  assert.is(args.containerId, 'c1');
  assert.is(args.options['no-new-keyring'], true);
  assert.equal(args.unknown, []);
});
engines.run();

const forms = suite('parseRuntimeArgs: the option spellings runc and crun accept');
forms('bundle as --bundle=X, -b X, -bX, -bundle X (Go flag), and the default cwd', () => {
  assert.is(parseRuntimeArgs(['run', '--bundle=/b1', 'x'], CWD).bundle, '/b1');
  assert.is(parseRuntimeArgs(['run', '-b', '/b2', 'x'], CWD).bundle, '/b2');
  assert.is(parseRuntimeArgs(['run', '-b/b3', 'x'], CWD).bundle, '/b3');
  assert.is(parseRuntimeArgs(['run', '-bundle', '/b4', 'x'], CWD).bundle, '/b4');
  assert.is(parseRuntimeArgs(['run', 'x'], CWD).bundle, CWD);
  assert.is(parseRuntimeArgs(['run', '-b', 'rel/dir', 'x'], CWD).bundle, '/work/cwd/rel/dir');
});
forms('crun: options after the container id, --config relative to the current directory', () => {
  const args = parseRuntimeArgs(['--root=/run/crun', 'create', 'x', '-b', '/b', '-f', 'other.json', '--preserve-fds=2'], CWD);
  assert.is(args.containerId, 'x');
  assert.is(args.specPath, '/work/cwd/other.json');
  assert.is(args.options['preserve-fds'], '2');
});
forms('-f is --force for delete, --config for create', () => {
  assert.is(parseRuntimeArgs(['delete', '-f', 'x'], CWD).options.force, true);
  assert.is(parseRuntimeArgs(['delete', '-f', 'x'], CWD).containerId, 'x');
  assert.is(parseRuntimeArgs(['create', '-f', 'c.json', 'x'], CWD).options.config, 'c.json');
});
forms('run -d and --keep, single-dash globals, --rootless with a value', () => {
  const args = parseRuntimeArgs(['-root', '/r', '--rootless', 'false', '--debug', 'run', '-d', '--keep', 'x'], CWD);
  assert.equal(args.global, { root: '/r', rootless: 'false', debug: true });
  assert.equal(args.options, { detach: true, keep: true });
  assert.is(args.containerId, 'x');
});
forms('no subcommand: --version, --help, nothing', () => {
  assert.is(parseRuntimeArgs(['--version'], CWD).command, undefined);
  assert.is(parseRuntimeArgs(['-v'], CWD).global.version, true);
  assert.is(parseRuntimeArgs([], CWD).command, undefined);
  assert.is(parseRuntimeArgs(['--root', '/r'], CWD).command, undefined);
});
forms('-- ends the options', () => {
  const args = parseRuntimeArgs(['kill', '--', 'x', '-9'], CWD);
  assert.equal(args.positionals, ['x', '-9']);
  assert.is(args.containerId, undefined);
  assert.is(parseRuntimeArgs(['exec', 'x', '--', 'sh'], CWD).containerId, 'x');
});
forms('an option of neither runtime is reported, and the id is not guessed when two positionals remain', () => {
  const args = parseRuntimeArgs(['create', '--future-flag', 'value', 'x'], CWD);
  assert.equal(args.unknown, ['future-flag']);
  assert.is(args.containerId, undefined);
  assert.is(parseRuntimeArgs(['create', '--future-flag=value', 'x'], CWD).containerId, 'x');
});
forms("crun's abbreviated long options (argp): a unique prefix is that option, so its value is not taken for the subcommand or the id; an ambiguous one stays unknown", () => {
  const args = parseRuntimeArgs(['--cgroup', 'systemd', '--log-f', 'json', 'create', '--bun', '/b', '--pid', '/p', 'x'], CWD);
  assert.is(args.command, 'create');
  assert.equal(args.global, { 'cgroup-manager': 'systemd', 'log-format': 'json' });
  assert.equal(args.options, { bundle: '/b', 'pid-file': '/p' });
  assert.is(args.containerId, 'x');
  assert.equal(args.unknown, []);
  const ambiguous = parseRuntimeArgs(['--lo', 'x.log', 'state', 'c1'], CWD);
  assert.equal(ambiguous.unknown, ['lo']);
  assert.is(ambiguous.command, 'x.log', 'not guessed: argp refuses an ambiguous prefix itself');
});
forms("a prefix unique among crun's own options is that option, though runc or another subcommand has a name with the same start (crun 1.8.1 runs 'crun --c cgroupfs list')", () => {
  const args = parseRuntimeArgs(['--c', 'systemd', 'create', '--bundle', '/b', 'x'], CWD);
  assert.is(args.command, 'create', "runc's --criu is no option of crun's: --c is crun's --cgroup-manager");
  assert.equal(args.global, { 'cgroup-manager': 'systemd' });
  assert.is(args.containerId, 'x');
});
forms("crun's clustered short options (argp): 'delete -fr RE' is --force --regex, so the shim compares the containers before and after", () => {
  for (const argv of [['delete', '-fr', '^a'], ['delete', '-rf', '^a']]) {
    assert.equal(parseRuntimeArgs(argv, CWD).options, { force: true, regex: true }, argv.join(' '));
  }
});
forms.run();

const fds = suite('extraFdCount');
fds('--preserve-fds for create, run and exec; LISTEN_FDS for create and run', () => {
  assert.is(extraFdCount(parseRuntimeArgs(['create', '--preserve-fds', '2', 'x'], CWD), { LISTEN_FDS: '1' }), 3);
  assert.is(extraFdCount(parseRuntimeArgs(['run', 'x'], CWD), {}), 0);
  assert.is(extraFdCount(parseRuntimeArgs(['run', '--preserve-fds=junk', 'x'], CWD), { LISTEN_FDS: '-4' }), 0);
  assert.is(extraFdCount(parseRuntimeArgs(['exec', '--preserve-fds', '2', 'x', 'sh'], CWD), { LISTEN_FDS: '1' }), 2);
  assert.is(extraFdCount(parseRuntimeArgs(['exec', '--preserve-fds=1', 'x', 'cat', '/proc/self/fd/3'], CWD), {}), 1);
  assert.is(extraFdCount(parseRuntimeArgs(['state', 'x'], CWD), { LISTEN_FDS: '2' }), 0);
});
fds('exec: options end at the container id; the command keeps its own options', () => {
  const args = parseRuntimeArgs(['--root', '/r', 'exec', '-t', '--preserve-fds', '1', '-e', 'A=1', '--user=0:0', 'x', 'sh', '--preserve-fds', '9', '-c', 'true'], CWD);
  assert.is(args.containerId, 'x');
  assert.equal(args.options, { tty: true, 'preserve-fds': '1', env: 'A=1', user: '0:0' });
  assert.equal(args.positionals, ['x', 'sh', '--preserve-fds', '9', '-c', 'true']);
  assert.equal(args.unknown, []);
  assert.is(extraFdCount(args, {}), 1);
});
fds.run();
