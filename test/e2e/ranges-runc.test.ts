// End to end with real runc and the built hook: two busybox containers in
// user namespaces are registered with their own mappings (pid included), a
// third whose host uids overlap one of them is refused by the createRuntime
// hook with the error on runc's stderr, and after both stop (runc delete
// runs the poststop hook) the registry is empty. Needs root, runc, unshare,
// busybox (static) and cgroup2 (at /sys/fs/cgroup, or elsewhere on a hybrid
// host, where the script runs in a private mount namespace whose
// /sys/fs/cgroup is the cgroup2 hierarchy).
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { skippedUnless } from '../helpers/skip';
import { cgroup2MountPoint } from '../../lib/doctor/doctor';
import type { IdMapping } from '../../lib/oci/idmap';
import { parseRegistry, type RangeEntry } from '../../lib/ranges/registry';
import { buildProgram, cgroup2ShellArgv, commandExists, PROGRAM } from './harness';

const root = join(import.meta.dirname, '..', '..');
const BUSYBOX = '/bin/busybox';

async function whyNot(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root';
  for (const tool of ['runc', 'unshare']) if (!(await commandExists(tool))) return `${tool} is not installed`;
  if (!existsSync(BUSYBOX)) return `${BUSYBOX} is missing (apt-get install busybox-static)`;
  if (cgroup2MountPoint(readFileSync('/proc/self/mountinfo', 'utf8')) === undefined) return 'no cgroup2 hierarchy is mounted';
  return undefined;
}

const skip = await whyNot();
const test = skippedUnless(suite('runc + hook: ranges registered, overlap refused, released at poststop'), 'runc ranges e2e', skip);
let work = '';
const tag = `${process.pid}`;
const ids = { a: `ranges-a-${tag}`, b: `ranges-b-${tag}`, c: `ranges-c-${tag}`, shared: `ranges-shared-${tag}`, joiner: `ranges-joiner-${tag}`, late: `ranges-late-${tag}` };
const A = 1_000_000;
const B = A + 65536;
// The guard is host-wide: a range of its own per run, so that a parallel run of these suites is no overlap.
const SHARED = 1_500_000_000 + (process.pid % 1000) * 65536;

function bundle(name: string, hostID: number, size: number, config: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  const spec = JSON.parse(readFileSync(join(root, 'test', 'fixtures', 'config-runc-spec-userns.json'), 'utf8'));
  spec.process.args = ['/bin/sleep', '120'];
  spec.root = { path: join(work, 'rootfs'), readonly: true };
  const map: IdMapping[] = [{ containerID: 0, hostID, size }];
  spec.linux.uidMappings = map;
  spec.linux.gidMappings = map;
  const hook = (stage: string) => [{ path: process.execPath, args: ['node', PROGRAM, 'hook', stage, '--config', config] }];
  spec.hooks = { createRuntime: hook('createRuntime'), poststop: hook('poststop') };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  return dir;
}

test.before(async () => {
  await buildProgram();
  work = mkdtempSync(join(tmpdir(), 'oci-userns-ranges-e2e-'));
  // Container root maps to unprivileged host ids, which must reach the rootfs.
  chmodSync(work, 0o755);
  const rootfs = join(work, 'rootfs');
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync(BUSYBOX, join(rootfs, 'bin', 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'sleep']) symlinkSync('busybox', join(rootfs, 'bin', applet));
});
test.after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A config file of the program's own per case: state dir and log under work/NAME. */
function programConfig(name: string): { stateDir: string; config: string } {
  const base = join(work, name);
  mkdirSync(base, { mode: 0o755 });
  const stateDir = join(base, 'state');
  const config = join(base, 'oci-userns.json');
  writeFileSync(config, JSON.stringify({ logFile: join(base, 'oci-userns.log'), stateDir, shift: { mode: 'never' } }));
  return { stateDir, config };
}

/** The registry as the script printed it between two markers. */
function snapshot(output: string, marker: string): RangeEntry[] {
  const match = new RegExp(`=== ${marker}\\n([\\s\\S]*?)=== end`).exec(output);
  if (!match) throw new Error(`no ${marker} snapshot in:\n${output}`);
  return parseRegistry(match[1]!, marker);
}

test('two containers registered, an overlapping third refused, registry empty after both stop', async () => {
  const { stateDir, config } = programConfig('config-plain');
  const bundles = { a: bundle('a', A, 65536, config), b: bundle('b', B, 65536, config), c: bundle('c', A + 4096, 1000, config) };
  const runcRoot = join(work, 'runc');
  const runc = `runc --root ${runcRoot}`;
  const script = `
  set -u
  trap '${Object.values(ids).map((id) => `${runc} delete -f ${id} >/dev/null 2>&1`).join('; ')}' EXIT
  for x in a b; do
    eval id=\\$ID_$x bundle=\\$BUNDLE_$x
    ${runc} run -d --bundle "$bundle" "$id" </dev/null >/dev/null 2>"${work}/$x.err" || { echo "start $x failed: $(cat ${work}/$x.err)"; exit 1; }
  done
  echo "=== running"; cat "${stateDir}/ranges.json"; echo "=== end"
  ${runc} run -d --bundle "$BUNDLE_c" "$ID_c" </dev/null >/dev/null 2>"${work}/c.err"
  echo "third exit $?"; echo "=== third stderr"; cat "${work}/c.err"; echo "=== end"
  echo "=== after refusal"; cat "${stateDir}/ranges.json"; echo "=== end"
  ${runc} delete -f "$ID_a"; ${runc} delete -f "$ID_b"
  echo "=== stopped"; cat "${stateDir}/ranges.json"; echo "=== end"
  `;
  const env = { ID_a: ids.a, ID_b: ids.b, ID_c: ids.c, BUNDLE_a: bundles.a, BUNDLE_b: bundles.b, BUNDLE_c: bundles.c, PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const argv = cgroup2ShellArgv(script);
  const result = await execa(argv[0]!, argv.slice(1), { env, extendEnv: false, reject: false, all: true, timeout: 120_000 });
  const out = result.all ?? '';
  assert.is(result.exitCode, 0, out);

  const running = snapshot(out, 'running');
  assert.equal(running.map((e) => e.id), [ids.a, ids.b], out);
  for (const [entry, host] of [
    [running[0]!, A],
    [running[1]!, B],
  ] as const) {
    assert.equal(entry.uidMappings, [{ containerID: 0, hostID: host, size: 65536 }]);
    assert.equal(entry.gidMappings, [{ containerID: 0, hostID: host, size: 65536 }]);
    assert.is(entry.source, 'external');
    assert.ok(Number.isInteger(entry.pid) && entry.pid! > 0, 'the hook records the container pid');
    assert.ok(Number.isInteger(entry.pidStart), 'and its start time');
  }

  assert.match(out, /third exit [1-9]/);
  const stderr = /=== third stderr\n([\s\S]*?)=== end/.exec(out)![1]!;
  assert.match(stderr, new RegExp(`oci-userns: createRuntime: container ${ids.c}: its host ids \\(uids 0:${A + 4096}:1000, gids 0:${A + 4096}:1000\\) overlap those of ${ids.a} \\(uids 0:${A}:65536`));
  assert.equal(snapshot(out, 'after refusal').map((e) => e.id), [ids.a, ids.b], 'the refused container left nothing behind');

  assert.equal(snapshot(out, 'stopped'), [], out);
});

test("a container that joins another's user namespace by path shares its range; the range lives until the last one is gone", async () => {
  const { stateDir, config } = programConfig('config-shared');
  const first = bundle('shared', SHARED, 65536, config);
  // As CRI-O does for a pod's containers and podman for --userns=container:A: the namespace by
  // path, with the same mappings (runc 1.1 wants them even when it joins).
  const joiner = bundle('joiner', SHARED, 65536, config);
  const spec = JSON.parse(readFileSync(join(joiner, 'config.json'), 'utf8'));
  spec.linux.namespaces = spec.linux.namespaces.map((ns: { type: string }) => (ns.type === 'user' ? { type: 'user', path: '/proc/APID/ns/user' } : ns));
  writeFileSync(join(joiner, 'config.json.in'), JSON.stringify(spec));
  const late = bundle('late', SHARED + 4096, 1000, config);
  const runcRoot = join(work, 'runc-shared');
  const runc = `runc --root ${runcRoot}`;
  const script = `
  set -u
  trap '${[ids.shared, ids.joiner, ids.late].map((id) => `${runc} delete -f ${id} >/dev/null 2>&1`).join('; ')}' EXIT
  ${runc} run -d --bundle "${first}" "${ids.shared}" </dev/null >/dev/null 2>"${work}/shared.err" || { echo "start shared failed: $(cat ${work}/shared.err)"; exit 1; }
  pid=$(${runc} state "${ids.shared}" | sed -n 's/.*"pid": *\\([0-9]*\\).*/\\1/p')
  sed "s/APID/$pid/" "${joiner}/config.json.in" > "${joiner}/config.json"
  ${runc} run -d --bundle "${joiner}" "${ids.joiner}" </dev/null >/dev/null 2>"${work}/joiner.err"
  echo "joiner exit $?"; cat "${work}/joiner.err"
  jpid=$(${runc} state "${ids.joiner}" | sed -n 's/.*"pid": *\\([0-9]*\\).*/\\1/p')
  [ "$(readlink /proc/$pid/ns/user)" = "$(readlink /proc/$jpid/ns/user)" ] && echo "same namespace"
  echo "=== both"; cat "${stateDir}/ranges.json"; echo "=== end"
  ${runc} delete -f "${ids.shared}"
  echo "=== joiner left"; cat "${stateDir}/ranges.json"; echo "=== end"
  ${runc} run -d --bundle "${late}" "${ids.late}" </dev/null >/dev/null 2>"${work}/late.err"
  echo "late exit $?"; echo "=== late stderr"; cat "${work}/late.err"; echo "=== end"
  ${runc} delete -f "${ids.joiner}"
  echo "=== stopped"; cat "${stateDir}/ranges.json"; echo "=== end"
  `;
  const argv = cgroup2ShellArgv(script);
  const result = await execa(argv[0]!, argv.slice(1), { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, extendEnv: false, reject: false, all: true, timeout: 120_000 });
  const out = result.all ?? '';
  assert.is(result.exitCode, 0, out);
  assert.match(out, /joiner exit 0\n/, 'the joining container starts');
  assert.match(out, /same namespace/, out);
  const both = snapshot(out, 'both');
  assert.equal(both.map((e) => [e.id, e.uidMappings[0]!.hostID, e.joined]), [
    [ids.shared, SHARED, undefined],
    [ids.joiner, SHARED, ids.shared],
  ]);
  assert.equal(snapshot(out, 'joiner left').map((e) => e.id), [ids.joiner], 'the range stays in use while the joiner runs');
  assert.match(out, new RegExp(`late exit [1-9][\\s\\S]*overlap those of ${ids.joiner} `), 'a third container on those ids is still refused');
  assert.equal(snapshot(out, 'stopped'), [], out);
});

test.run();
