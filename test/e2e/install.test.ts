// install.sh into a DESTDIR: what it writes, that every JSON it writes is
// valid, that a second run changes nothing, and that --uninstall leaves an
// empty tree. Runs the real script against the built dist/ files.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS } from '../../lib/config/config';
import { loadConfig } from '../../lib/config/config-file';
import { schemaProblem } from '../../lib/oci/schemas';
import { skippedUnless } from '../helpers/skip';

const root = join(import.meta.dirname, '..', '..');
const script = join(root, 'install.sh');
const HOOK_FILES = [
  'oci-userns-annotation-createruntime.json',
  'oci-userns-annotation-poststop.json',
  'oci-userns-systemd-createruntime.json',
  'oci-userns-systemd-poststop.json',
];

let dest = '';
const install = (args: string[] = [], env: Record<string, string> = {}) =>
  execa('bash', [script, '--no-build', ...args], { env: { DESTDIR: dest, ...env }, reject: false, all: true });

/** Every path under dir with its type and content hash or link target. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      const key = relative(dir, p);
      if (st.isSymbolicLink()) out[key] = `link ${readlinkSync(p)}`;
      else if (st.isDirectory()) {
        out[key] = `dir ${(st.mode & 0o7777).toString(8)}`;
        walk(p);
      } else out[key] = `file ${(st.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  walk(dir);
  return out;
}

const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

const test = suite('install.sh into a DESTDIR');
test.before.each(() => {
  dest = mkdtempSync(join(tmpdir(), 'oci-userns-install-'));
});
test.after.each(() => rmSync(dest, { recursive: true, force: true }));

test('installs program, runtime alias, hooks.d files, drop-ins and a default config; all JSON valid', async () => {
  const result = await install(['--containers-conf', '--crio']);
  assert.is(result.exitCode, 0, result.all);
  const files = tree(dest);
  const program = join(dest, 'usr/local/bin/oci-userns');
  assert.is(files['usr/local/bin/oci-userns'], 'link ../lib/oci-userns/oci-userns.cjs');
  assert.ok(files['usr/local/lib/oci-userns/oci-userns.cjs']?.startsWith('file 755 '));
  const built = readdirSync(join(root, 'dist'));
  for (const name of ['cli.cjs', 'shift.cjs', 'chown-thread.cjs', 'oci-userns.cjs.map']) assert.ok(built.includes(name), `dist/${name} is built`);
  for (const name of built.filter((n) => n !== 'oci-userns-idmap')) assert.ok(files[`usr/local/lib/oci-userns/${name}`], `dist/${name} is installed`);
  const helperHash = createHash('sha256').update(readFileSync(join(root, 'dist', 'oci-userns-idmap'))).digest('hex');
  assert.is(files['usr/local/libexec/oci-userns/oci-userns-idmap'], `file 755 ${helperHash}`, 'the C helper, executable, in libexec');
  assert.not.ok(files['usr/local/lib/oci-userns/oci-userns-idmap'], 'and only there');
  // The shim's front, beside the program it hands create/run to; with the default config, as it is in the tree.
  const front = join(dest, 'usr/local/bin/oci-userns-runtime');
  assert.is(readFileSync(front, 'utf8'), readFileSync(join(import.meta.dirname, '..', '..', 'bin', 'oci-userns-runtime'), 'utf8'));
  assert.ok(files['usr/local/bin/oci-userns-runtime']?.startsWith('file 755 '));
  const runcVersion = await execa(front, ['--version'], { reject: false, env: { OCI_USERNS_CONFIG: '' } });
  assert.equal([runcVersion.exitCode, runcVersion.stdout], [0, (await execa('runc', ['--version'])).stdout]);
  const shebang = readFileSync(program, 'utf8').split('\n', 1)[0]!;
  assert.match(shebang, /^#!\/\S*node$/, 'node by absolute path: hooks get no PATH from runc');

  for (const name of HOOK_FILES) {
    const def = readJson(join(dest, 'usr/share/containers/oci/hooks.d', name));
    assert.is(schemaProblem('hooks', def), undefined, name);
    assert.is(def.hook.path, '/usr/local/bin/oci-userns', 'the final path, not the DESTDIR one');
    assert.not.ok(def.hook.env.some((e: string) => e.startsWith('OCI_USERNS_CONFIG=')), 'default config needs no env');
  }
  const jsonFiles = Object.keys(files).filter((p) => p.endsWith('.json'));
  assert.equal(jsonFiles.sort(), [...HOOK_FILES.map((n) => `usr/share/containers/oci/hooks.d/${n}`), 'etc/containers/oci-userns.json'].sort());

  const configPath = join(dest, 'etc/containers/oci-userns.json');
  assert.is(schemaProblem('config-file', readJson(configPath)), undefined);
  assert.equal(await loadConfig({ path: configPath, env: {} }), DEFAULTS, 'the default file states the defaults');

  const containersConf = readFileSync(join(dest, 'etc/containers/containers.conf.d/50-oci-userns.conf'), 'utf8');
  assert.match(containersConf, /^hooks_dir = \["\/usr\/share\/containers\/oci\/hooks\.d"\]$/m);
  assert.match(containersConf, /^oci-userns = \["\/usr\/local\/bin\/oci-userns-runtime"\]$/m);
  const crioConf = readFileSync(join(dest, 'etc/crio/crio.conf.d/50-oci-userns.conf'), 'utf8');
  assert.match(crioConf, /^\[crio\.runtime\]\nhooks_dir = \["\/usr\/share\/containers\/oci\/hooks\.d"\]$/m);
  assert.match(crioConf, /^runtime_path = "\/usr\/local\/bin\/oci-userns-runtime"$/m);

  const version = await execa(program, ['--version'], { reject: false });
  assert.is(version.exitCode, 0, version.stderr);
  // validate runs in cli.cjs, loaded from beside the executable.
  const check = await execa(program, ['validate', '--kind', 'hooks', join(dest, 'usr/share/containers/oci/hooks.d', HOOK_FILES[0]!)], { reject: false });
  assert.is(check.exitCode, 0, check.stderr);
});

test("--crio allows only CRI-O's own annotation names (crio refuses others); --containerd writes the handler", async () => {
  const result = await install(['--crio', '--containerd']);
  assert.is(result.exitCode, 0, result.all);
  const crioConf = readFileSync(join(dest, 'etc/crio/crio.conf.d/50-oci-userns.conf'), 'utf8');
  const allowed = JSON.parse(/^allowed_annotations = (\[.*\])$/m.exec(crioConf)![1]!) as string[];
  assert.equal(allowed.filter((name) => !name.startsWith('io.kubernetes.cri-o.')), [], crioConf);
  const drop = join(dest, 'etc/containerd/conf.d/50-oci-userns.toml');
  const toml = readFileSync(drop, 'utf8');
  assert.match(toml, /^\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.oci-userns\]\n {2}runtime_type = "io\.containerd\.runc\.v2"\n {2}pod_annotations = \["io\.oci-userns\.\*"\]$/m);
  assert.match(toml, /^ {4}BinaryName = "\/usr\/local\/bin\/oci-userns-runtime"$/m);
  assert.match(result.stderr, /imports = \["\/etc\/containerd\/conf\.d\/\*\.toml"\]/, 'says how config.toml reads the drop-in');
});

test('a second install changes nothing and says so', async () => {
  assert.is((await install(['--crio'])).exitCode, 0);
  const before = tree(dest);
  const again = await install(['--crio']);
  assert.is(again.exitCode, 0, again.all);
  assert.equal(tree(dest), before);
  const verbs = again.stdout.split('\n').filter((l) => l.startsWith('  ')).map((l) => l.trim().split(/\s+/, 1)[0]);
  assert.ok(verbs.length >= 8);
  assert.equal([...new Set(verbs)], ['unchanged'], again.stdout);
});

test('--uninstall removes everything it installed: an empty tree', async () => {
  assert.is((await install(['--containers-conf', '--crio'])).exitCode, 0);
  const result = await install(['--uninstall']);
  assert.is(result.exitCode, 0, result.all);
  assert.equal(tree(dest), {});
});

test("the admin's config file is neither overwritten nor removed", async () => {
  mkdirSync(join(dest, 'etc/containers'), { recursive: true });
  const mine = '{ "logLevel": "debug" }\n';
  writeFileSync(join(dest, 'etc/containers/oci-userns.json'), mine);
  const result = await install();
  assert.is(result.exitCode, 0, result.all);
  assert.match(result.stdout, /kept\s+\/etc\/containers\/oci-userns\.json \(existing config, not overwritten\)/);
  assert.is((await install(['--uninstall'])).exitCode, 0);
  assert.equal(tree(dest), { etc: 'dir 755', 'etc/containers': 'dir 755', 'etc/containers/oci-userns.json': tree(dest)['etc/containers/oci-userns.json']! });
  assert.is(readFileSync(join(dest, 'etc/containers/oci-userns.json'), 'utf8'), mine);
});

test('a file changed after install is kept by --uninstall', async () => {
  assert.is((await install()).exitCode, 0);
  const hook = join(dest, 'usr/share/containers/oci/hooks.d', HOOK_FILES[2]!);
  writeFileSync(hook, readFileSync(hook, 'utf8').replace('"timeout": 120', '"timeout": 300'));
  const result = await install(['--uninstall']);
  assert.is(result.exitCode, 0);
  assert.match(result.stdout, /kept\s+\S+oci-userns-systemd-createruntime\.json \(changed since install/);
  assert.equal(Object.keys(tree(dest)).filter((p) => !lstatSync(join(dest, p)).isDirectory()), [`usr/share/containers/oci/hooks.d/${HOOK_FILES[2]}`]);
});

test('--prefix, --hooks-dir and --config land in the hooks.d files; a config elsewhere is passed by env', async () => {
  const result = await install(['--prefix', '/opt/ou', '--hooks-dir', '/etc/containers/oci/hooks.d', '--config', '/etc/ou/config.json', '--containers-conf']);
  assert.is(result.exitCode, 0, result.all);
  for (const name of HOOK_FILES) {
    const def = readJson(join(dest, 'etc/containers/oci/hooks.d', name));
    assert.is(def.hook.path, '/opt/ou/bin/oci-userns');
    assert.ok(def.hook.env.includes('OCI_USERNS_CONFIG=/etc/ou/config.json'));
  }
  assert.match(readFileSync(join(dest, 'opt/ou/bin/oci-userns-runtime'), 'utf8'), /^default_config='\/etc\/ou\/config\.json'$/m);
  assert.is(schemaProblem('config-file', readJson(join(dest, 'etc/ou/config.json'))), undefined);
  // Engines give a runtime no environment of theirs: with --config the front names it, and the README says so.
  const row = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8').split('\n').find((l) => l.startsWith('| `$PREFIX/bin/oci-userns-runtime` |'));
  assert.match(row ?? '', /front.*`--config FILE`/, `README row: ${row}`);
  const conf = readFileSync(join(dest, 'etc/containers/containers.conf.d/50-oci-userns.conf'), 'utf8');
  assert.match(conf, /^hooks_dir = \["\/etc\/containers\/oci\/hooks\.d"\]$/m);
  const wrongDir = await install(['--uninstall', '--prefix', '/opt/ou', '--hooks-dir', '/usr/share/containers/oci/hooks.d']);
  assert.is(wrongDir.exitCode, 1);
  assert.match(wrongDir.stderr, /used --hooks-dir \/etc\/containers\/oci\/hooks\.d/);
  assert.is((await install(['--uninstall', '--prefix', '/opt/ou'])).exitCode, 0);
  assert.equal(tree(dest), {});
});

test('reinstalling with another hooks dir removes the old hooks.d files', async () => {
  assert.is((await install()).exitCode, 0);
  const result = await install(['--hooks-dir', '/etc/containers/oci/hooks.d']);
  assert.is(result.exitCode, 0, result.all);
  assert.match(result.stdout, /removed\s+\/usr\/share\/containers\/oci\/hooks\.d\/oci-userns-systemd-poststop\.json \(no longer installed\)/);
  const paths = Object.keys(tree(dest));
  assert.not.ok(paths.some((p) => p.startsWith('usr/share/containers')), paths.join('\n'));
  assert.ok(paths.includes('etc/containers/oci/hooks.d/oci-userns-systemd-poststop.json'));
  assert.is((await install(['--uninstall'])).exitCode, 0);
  assert.equal(tree(dest), {});
});

test('missing prerequisites are named, nothing is written', async () => {
  const fakeNode = join(dest, 'node18');
  writeFileSync(fakeNode, '#!/bin/sh\necho 18\n');
  chmodSync(fakeNode, 0o755);
  for (const [node, expected] of [
    [join(dest, 'nonexistent'), /node >= 20 \(\S+nonexistent is not executable\)/],
    [fakeNode, /node >= 20 \(\S+node18 is 18\)/],
  ] as const) {
    const result = await install(['--node', node]);
    assert.is(result.exitCode, 1);
    assert.match(result.stderr, /missing prerequisites/);
    assert.match(result.stderr, expected);
  }
  assert.equal(Object.keys(tree(dest)), ['node18']);
});

test('bad arguments exit 2 with a reason', async () => {
  for (const args of [['--prefix'], ['--prefix', 'relative'], ['--bogus']]) {
    const result = await install(args);
    assert.is(result.exitCode, 2, args.join(' '));
    assert.match(result.stderr, /^install\.sh: /);
  }
  assert.equal(tree(dest), {});
});

test.run();

// containerd itself reads the drop-in, when the CRI tests cached it.
const containerd = '/var/cache/oci-userns-dev/containerd/root/usr/bin/containerd';
const dump = skippedUnless(suite('install.sh drop-in as containerd reads it'), 'install e2e (containerd config dump)', existsSync(containerd) ? undefined : `${containerd} is not cached (scripts/containerd-cache.sh)`);
dump.before.each(() => {
  dest = mkdtempSync(join(tmpdir(), 'oci-userns-install-'));
});
dump.after.each(() => rmSync(dest, { recursive: true, force: true }));

dump('containerd config dump shows the --containerd handler', async () => {
  assert.is((await install(['--containerd'])).exitCode, 0);
  const main = join(dest, 'config.toml');
  writeFileSync(main, `version = 2\nimports = ["${join(dest, 'etc/containerd/conf.d/50-oci-userns.toml')}"]\n`);
  const dumped = await execa(containerd, ['--config', main, 'config', 'dump'], { reject: false, all: true });
  assert.is(dumped.exitCode, 0, dumped.all);
  assert.match(dumped.stdout, /BinaryName = "\/usr\/local\/bin\/oci-userns-runtime"/);
  assert.match(dumped.stdout, /pod_annotations = \["io\.oci-userns\.\*"\]/);
});

dump.run();
