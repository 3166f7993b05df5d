// End to end with real podman and runc: oci-userns installed by install.sh
// into a temporary prefix and hooks folder, a Debian systemd image imported
// from the cached debootstrap rootfs, `--userns=auto --systemd=always`.
// Needs root, podman, runc and cgroup2 (at /sys/fs/cgroup, or elsewhere on
// a hybrid host, where each podman session runs in a private mount
// namespace whose /sys/fs/cgroup is the cgroup2 hierarchy).
import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { skippedUnless } from '../helpers/skip';
import { cgroup2MountPoint } from '../../lib/doctor/doctor';
import { DEFAULTS } from '../../lib/config/config';
import { hostRangesOverlap, parseProcIdMap, type IdMapping } from '../../lib/oci/idmap';
import { chooseRange } from '../../lib/ranges/allocator';
import { readPool } from '../../lib/ranges/subid';
import { parseStorageContainers } from '../../lib/ranges/userns-scan';
import { busyboxRootfs, buildProgram, buildSpec, cgroup2ShellArgv, commandExists, PROGRAM, Session, writeBundle } from './harness';

const root = join(import.meta.dirname, '..', '..');
const IMAGE = 'localhost/oci-userns-debian-systemd';
// No pids controller on this machine's cgroup2 and no CAP_SYS_RESOURCE to raise rlimits.
const RUN = ['--runtime', 'runc', '--pids-limit', '-1', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
const SUBID_LINE = 'containers:2147483647:2147483648';

async function whyNot(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root';
  for (const tool of ['podman', 'runc', 'unshare']) if (!(await commandExists(tool))) return `${tool} is not installed`;
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  if (cgroup2MountPoint(mountinfo) === undefined) return 'no cgroup2 hierarchy is mounted';
  return undefined;
}

/**
 * Runs a shell script where podman sees cgroup2 at /sys/fs/cgroup: directly
 * on a unified host, else in a private mount namespace (hybrid host). A
 * container started there must be exec'd, stopped and removed in the same
 * script, because its rootfs mount lives in that namespace.
 */
function engineShell(script: string, env: Record<string, string> = {}) {
  const [command, ...args] = cgroup2ShellArgv(script);
  return execa(command!, args, { env, reject: false, all: true, timeout: 180_000 });
}

/** Like an admin: add the containers range for --userns=auto only when there is none. */
function ensureSubids() {
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (text.split('\n').some((l) => l.startsWith('containers:'))) continue;
    appendFileSync(file, `${text === '' || text.endsWith('\n') ? '' : '\n'}${SUBID_LINE}\n`);
    console.log(`podman e2e: added '${SUBID_LINE}' to ${file} (needed by --userns=auto)`);
  }
}

async function ensureImage() {
  if ((await execa('podman', ['image', 'exists', IMAGE], { reject: false })).exitCode === 0) return;
  const { stdout: tarball } = await execa(join(root, 'scripts', 'debian-rootfs.sh'));
  await execa('podman', ['import', '--change', 'CMD ["/sbin/init"]', tarball.trim(), IMAGE]);
}

const skip = await whyNot();
const test = skippedUnless(suite('podman 4 + runc: systemd in a user namespace through the installed hooks.d files'), 'podman e2e', skip);
let dir = '';
let hooksDir = '';
let logFile = '';
const names: string[] = [];

test.before(async () => {
  ensureSubids();
  await ensureImage();
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-podman-'));
  // The container's root maps to an unprivileged host uid that must reach the hook's files.
  chmodSync(dir, 0o755);
  hooksDir = join(dir, 'hooks.d');
  logFile = join(dir, 'log', 'oci-userns.log');
  const config = join(dir, 'oci-userns.json');
  writeFileSync(config, JSON.stringify({ logFile, stateDir: join(dir, 'state') }));
  const install = await execa('bash', [join(root, 'install.sh'), '--no-build', '--prefix', join(dir, 'prefix'), '--hooks-dir', hooksDir, '--config', config], { reject: false, all: true });
  assert.is(install.exitCode, 0, install.all);
});
test.after(async () => {
  if (names.length > 0) await engineShell(`podman rm -f --ignore ${names.join(' ')} >/dev/null`);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const uniqueName = (what: string) => {
  const name = `oci-userns-e2e-${what}-${process.pid}`;
  names.push(name);
  return name;
};

/** The log lines of one container, by its id. */
function logLines(containerId: string): Array<{ stage: string; message: string; outcome: string }> {
  if (!existsSync(logFile)) return [];
  return readFileSync(logFile, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    // One verdict line per hook run; shift and release lines carry the id too.
    .filter((l) => l.containerId === containerId && l.outcome !== undefined);
}

async function containerId(name: string, cidFile: string): Promise<string> {
  assert.ok(existsSync(cidFile), `podman wrote no container id for ${name}`);
  return readFileSync(cidFile, 'utf8').trim();
}

test('without the hooks: the systemd container exits 255 (runc does not delegate the cgroup)', async () => {
  const name = uniqueName('nohooks');
  const result = await engineShell(`podman run --rm --name ${name} --userns=auto --systemd=always ${RUN.join(' ')} ${IMAGE} /sbin/init`);
  assert.is(result.exitCode, 255, result.all);
});

test('with the hooks: systemd boots to running or degraded; each stage ran once', async () => {
  const name = uniqueName('systemd');
  const cid = join(dir, `${name}.cid`);
  const result = await engineShell(
    [
      // -t gives systemd a console, so `podman logs` has its boot messages when it fails.
      `podman run -d -t --cidfile ${cid} --name ${name} --hooks-dir ${hooksDir} --annotation io.oci-userns.enable=true --userns=auto --systemd=always ${RUN.join(' ')} ${IMAGE} /sbin/init >/dev/null`,
      // Before PID 1 opens its bus, systemctl fails at once ("Failed to connect to bus"): ask again until it answers.
      `deadline=$(($(date +%s) + 90)); while :; do state=$(timeout 90 podman exec ${name} systemctl is-system-running --wait 2>/dev/null); [ -n "$state" ] && [ "$state" != offline ] && break; [ "$(date +%s)" -lt "$deadline" ] || break; sleep 0.1; done`,
      'echo "state=$state"',
      `case "$state" in running|degraded) ;; *) podman logs --tail 15 ${name} ;; esac`,
      `podman stop -t 10 ${name} >/dev/null`,
      `podman rm -f ${name} >/dev/null`,
    ].join('\n'),
  );
  assert.match(result.stdout, /^state=(running|degraded)$/m, result.all);
  const lines = logLines(await containerId(name, cid));
  assert.equal(
    lines.map((l) => [l.stage, l.outcome]),
    [
      ['createRuntime', 'done'],
      ['poststop', 'done'],
    ],
    'the annotation on a systemd container must not start the hook twice',
  );
});

test('a non-systemd container without the annotation never starts the hook', async () => {
  const name = uniqueName('plain');
  const cid = join(dir, `${name}.cid`);
  const result = await engineShell(`podman run --rm --cidfile ${cid} --name ${name} --hooks-dir ${hooksDir} --userns=auto ${RUN.join(' ')} ${IMAGE} /bin/true`);
  assert.is(result.exitCode, 0, result.all);
  assert.equal(logLines(await containerId(name, cid)), [], 'no log line: the hook was not started');
});

test('a non-systemd container with io.oci-userns.enable=true gets createRuntime and poststop once', async () => {
  const name = uniqueName('annotated');
  const cid = join(dir, `${name}.cid`);
  const result = await engineShell(
    `podman run --rm --cidfile ${cid} --name ${name} --hooks-dir ${hooksDir} --annotation io.oci-userns.enable=true --userns=auto ${RUN.join(' ')} ${IMAGE} /bin/true`,
  );
  assert.is(result.exitCode, 0, result.all);
  assert.equal(logLines(await containerId(name, cid)).map((l) => l.stage), ['createRuntime', 'poststop']);
});

test("host-wide: alloc and the shim never hand out ids a podman --userns=auto container holds, stopped or running", async () => {
  await buildProgram();
  const session = await Session.open();
  const stopped = uniqueName('auto-stopped');
  const running = uniqueName('auto-running');
  const work = join(dir, 'host-wide');
  const shimRoot = join(work, 'runc');
  let shimId = '';
  try {
    // No hooks: podman alone chooses these ranges, from the same pool (containers in /etc/subuid).
    const create = await session.run(['podman', 'create', '--name', stopped, '--userns=auto', ...RUN, IMAGE, '/bin/true']);
    assert.is(create.exitCode, 0, create.all);
    const run = await session.run(['podman', 'run', '-d', '--name', running, '--userns=auto', ...RUN, IMAGE, 'sleep', '300']);
    assert.is(run.exitCode, 0, run.all);
    const pid = (await session.run(['podman', 'inspect', '--format', '{{.State.Pid}}', running])).stdout.trim();
    const live = parseProcIdMap(readFileSync(`/proc/${pid}/uid_map`, 'utf8'), 'uid_map');
    const storageList = '/var/lib/containers/storage/overlay-containers/containers.json';
    const kept = parseStorageContainers(readFileSync(storageList, 'utf8'), storageList).find((c) => c.names.includes(stopped));
    assert.ok(kept, `containers/storage keeps no range for the stopped ${stopped}`);
    const podman: Array<[string, IdMapping[]]> = [
      [stopped, kept.uidMappings],
      [running, live],
    ];

    // Names whose preferred block (the allocator's hash) is the one podman holds: the registry alone would hand it out.
    const config = { ...DEFAULTS.pool };
    const pool = await readPool({ pool: config });
    const nameFor = (held: IdMapping[], prefix: string) => {
      for (let i = 0; i < 1_000_000; i++) {
        const key = `${prefix}-${i}`;
        const choice = chooseRange({ pool, blockSize: config.blockSize, key, inUse: [] });
        if (hostRangesOverlap(choice.uidMappings, held)) return key;
      }
      throw new Error(`no name lands on ${JSON.stringify(held)}`);
    };
    mkdirSync(work, { recursive: true, mode: 0o755 });
    const configPath = join(work, 'oci-userns.json');
    writeFileSync(configPath, JSON.stringify({ logFile: join(work, 'log'), stateDir: join(work, 'state'), runtime: { path: 'runc', policy: 'always' } }));
    const allocId = nameFor(kept.uidMappings, 'alloc');
    const alloc = await execa(process.execPath, [PROGRAM, 'alloc', allocId, '--json', '--config', configPath], { reject: false, all: true });
    assert.is(alloc.exitCode, 0, alloc.all);
    const allocated = JSON.parse(alloc.stdout) as { uidMappings: IdMapping[]; gidMappings: IdMapping[] };

    shimId = nameFor(live, 'shim');
    const rootfs = busyboxRootfs(join(work, 'rootfs'));
    const bundle = writeBundle(join(work, 'bundle'), buildSpec({ runtime: 'runc', rootfs, args: ['sleep', '300'], userns: false }));
    const shim = join(work, 'oci-userns-runtime');
    symlinkSync(PROGRAM, shim);
    // Detached, the container keeps the stdio it was given: a file, not the test's pipes.
    const out = join(work, 'shim.out');
    const started = await session.run(['sh', '-c', `"$0" --root ${shimRoot} run -d --bundle ${bundle} ${shimId} </dev/null >${out} 2>&1`, shim], { env: { ...process.env, OCI_USERNS_CONFIG: configPath } });
    assert.is(started.exitCode, 0, readFileSync(out, 'utf8'));
    const shimPid = JSON.parse((await session.run(['runc', '--root', shimRoot, 'state', shimId])).stdout).pid as number;
    const shimMap = parseProcIdMap(readFileSync(`/proc/${shimPid}/uid_map`, 'utf8'), 'uid_map');

    for (const [ours, what] of [
      [allocated.uidMappings, `oci-userns alloc ${allocId}`],
      [shimMap, `the shim's container ${shimId}`],
    ] as const) {
      for (const [name, held] of podman) assert.not.ok(hostRangesOverlap(ours, held), `${what} got ${JSON.stringify(ours)}, which overlaps podman's ${name} ${JSON.stringify(held)}`);
    }
  } finally {
    if (shimId) await session.run(['runc', '--root', shimRoot, 'delete', '-f', shimId]);
    await session.run(['podman', 'rm', '-f', '--ignore', stopped, running]);
    session.close();
  }
});

test.run();
