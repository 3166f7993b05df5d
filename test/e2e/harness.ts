// The shared end-to-end harness: real runc/crun containers in user
// namespaces, on whatever cgroup layout the host has. Import-only (no side
// effects), so uvu may load it as a test file and find no tests.
//
// Typical use in a suite:
//
//   const skip = await skipReason({ runtimes: ['runc'] });
//   // When skip is set: prints "SKIPPED my suite: <skip>", each test counts as skipped, no hook runs.
//   const test = skippedUnless(suite('my suite'), 'my suite', skip);  // ../helpers/skip.ts
//   test.before: work = Workspace.create('oci-userns-mytest-');       // 0755 temp dir
//                session = await Session.open();                      // where runtimes see cgroup2
//   test(...):   const runc = new Runtime(session, 'runc');
//                const rootfs = busyboxRootfs(work.path('rootfs'));
//                const bundle = writeBundle(work.path('b1'), buildSpec({ runtime: 'runc', rootfs, args: ['/bin/sleep', '60'], userns: { hostId: 300000, size: 65536 } }));
//                const id = uniqueId('mytest');
//                await runc.run(id, bundle, { detach: true });
//                ... runc.exec(id, [...]) ...
//                finally: await runc.cleanup();
//   test.after:  session?.close(); work?.remove();
//
// Machine facts behind the choices here: ../../../shared/testing-on-this-machine.md
// (hybrid cgroups, no CAP_SYS_RESOURCE, 0700 temp dirs, systemd's console).

import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa, type Options as ExecaOptions } from 'execa';
import { cgroup2Mount } from '../../lib/sys/mountinfo';
import type { Spec, SpecHook, SpecMount } from '../../lib/oci/spec';

export const REPO = join(import.meta.dirname, '..', '..');
/** The built program (npm run build), or $OCI_USERNS_PROGRAM. */
export const PROGRAM = process.env.OCI_USERNS_PROGRAM ?? join(REPO, 'dist', 'oci-userns.cjs');
export const BUSYBOX = '/bin/busybox';

export type RuntimeName = 'runc' | 'crun';

// ---------------------------------------------------------------- host checks

/**
 * How the host mounts cgroups, as this process sees them:
 * - unified: cgroup2 at /sys/fs/cgroup, runtimes work as they are;
 * - hybrid: v1 controllers at /sys/fs/cgroup, cgroup2 elsewhere (usually
 *   /sys/fs/cgroup/unified); runtimes must run in a private mount namespace
 *   whose /sys/fs/cgroup is the cgroup2 hierarchy (see Session);
 * - v1: no cgroup2 at all; delegation, and these tests, cannot work.
 */
export type CgroupHost = { kind: 'unified'; cgroup2: string } | { kind: 'hybrid'; cgroup2: string } | { kind: 'v1' };

export function detectCgroupHost(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): CgroupHost {
  const mount = cgroup2Mount(mountinfo);
  if (!mount) return { kind: 'v1' };
  return { kind: mount.mountPoint === '/sys/fs/cgroup' ? 'unified' : 'hybrid', cgroup2: mount.mountPoint };
}

export async function commandExists(name: string): Promise<boolean> {
  return (await execa('sh', ['-c', 'command -v "$1"', 'sh', name], { reject: false })).exitCode === 0;
}

export interface Needs {
  runtimes?: RuntimeName[];
  /** Other commands on PATH. */
  commands?: string[];
  /** Files that must exist, with the package that provides them. */
  files?: Array<{ path: string; hint: string }>;
  /** The built dist/oci-userns.cjs (call buildProgram() first to build it). */
  program?: boolean;
}

/** Why an e2e suite cannot run here, or undefined. Suites pass it to skippedUnless (../helpers/skip.ts), which prints it and counts each test as skipped, never as passed. */
export async function skipReason(needs: Needs = {}): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root';
  const host = detectCgroupHost();
  if (host.kind === 'v1') return 'the host has no cgroup2 hierarchy (cgroup v1 only); boot with systemd.unified_cgroup_hierarchy=1 or mount cgroup2';
  const commands = [...(needs.runtimes ?? []), ...(needs.commands ?? []), ...(host.kind === 'hybrid' ? ['unshare', 'nsenter'] : [])];
  for (const command of commands) if (!(await commandExists(command))) return `${command} is not installed`;
  for (const file of needs.files ?? []) if (!existsSync(file.path)) return `${file.path} is missing (${file.hint})`;
  if (needs.program && !existsSync(PROGRAM)) return `${PROGRAM} is not built (npm run build)`;
  return undefined;
}

let built: Promise<void> | undefined;
/** Builds dist/oci-userns.cjs once per process (unless $OCI_USERNS_PROGRAM names another build). */
export function buildProgram(): Promise<void> {
  built ??= (async () => {
    if (process.env.OCI_USERNS_PROGRAM) return;
    const result = await execa(process.execPath, [join(REPO, 'scripts', 'build.mjs')], { cwd: REPO, reject: false, all: true });
    if (result.exitCode !== 0) throw new Error(`build failed: ${result.all}`);
  })();
  return built;
}

/** The built idmap helper (native/idmap-mount.c), or $OCI_USERNS_IDMAP_HELPER. */
export const IDMAP_HELPER = process.env.OCI_USERNS_IDMAP_HELPER ?? join(REPO, 'dist', 'oci-userns-idmap');

let helperBuilt: Promise<void> | undefined;
/** Builds dist/oci-userns-idmap once per process with make, after the program's build (unless $OCI_USERNS_IDMAP_HELPER names another build). */
export function buildIdmapHelper(): Promise<void> {
  helperBuilt ??= (async () => {
    if (process.env.OCI_USERNS_IDMAP_HELPER) return;
    await buildProgram();
    const result = await execa('make', ['-s', '-C', join(REPO, 'native')], { reject: false, all: true });
    if (result.exitCode !== 0) throw new Error(`make -C native failed: ${result.all}`);
  })();
  return helperBuilt;
}

// ----------------------------------------------------------- temp trees, ids

let counter = 0;
/** A container id no other test, process or leftover uses: prefix-pid-counter-random. */
export function uniqueId(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 7)}`;
}

/**
 * A temporary directory that container root (an unprivileged host uid) can
 * traverse: mkdtemp makes 0700 dirs, and runtimes then fail to mount the
 * rootfs with "permission denied".
 */
export class Workspace {
  private constructor(readonly dir: string) {}

  static create(prefix: string): Workspace {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    chmodSync(dir, 0o755);
    return new Workspace(dir);
  }

  /** A path inside; its parent directories are created 0755. */
  path(...parts: string[]): string {
    const path = join(this.dir, ...parts);
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    return path;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// -------------------------------------------------------------------- rootfs

/** A busybox-static rootfs with the given applets as symlinks in /bin. */
export function busyboxRootfs(dir: string, applets = ['sh', 'sleep', 'cat', 'true', 'ls', 'id', 'stat']): string {
  for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'etc']) mkdirSync(join(dir, d), { recursive: true, mode: 0o755 });
  copyFileSync(BUSYBOX, join(dir, 'bin', 'busybox'));
  chmodSync(join(dir, 'bin', 'busybox'), 0o755);
  for (const applet of applets) symlinkSync('busybox', join(dir, 'bin', applet));
  return dir;
}

/** The cached Debian bookworm systemd tarball; the first call on a machine runs debootstrap (about 75 s). */
export async function debianTarball(): Promise<string> {
  const { stdout } = await execa(join(REPO, 'scripts', 'debian-rootfs.sh'));
  return stdout.trim();
}

/** Extracts the Debian systemd rootfs into dir, owned by host root (ids, xattrs, ACLs as built). */
export async function debianRootfs(dir: string): Promise<string> {
  const tarball = await debianTarball();
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  await execa('tar', ['--xattrs', '--xattrs-include=*', '--acls', '--numeric-owner', '-xpf', tarball, '-C', dir]);
  return dir;
}

// ---------------------------------------------------------------------- spec

export interface SpecOptions {
  runtime: RuntimeName;
  /** Absolute path of the rootfs. */
  rootfs: string;
  args: string[];
  /** Container 0 -> hostId..hostId+size-1 for uids and gids, with a cgroup namespace; false: no user namespace. */
  userns: { hostId: number; size: number } | false;
  /** Give PID 1 a console (systemd prints its boot log only there); run it under `script`. */
  terminal?: boolean;
  env?: string[];
  hooks?: Spec['hooks'];
  annotations?: Record<string, string>;
  /** linux.cgroupsPath; the runtime's default when absent. */
  cgroupsPath?: string;
  /** tmpfs on /run, /run/lock and /tmp, container=oci and the capabilities systemd wants (as podman --systemd=always). */
  systemd?: boolean;
  readonlyRoot?: boolean;
}

const DEFAULT_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_AUDIT_WRITE', 'CAP_MKNOD', 'CAP_SETFCAP'];
// In a user namespace these only reach what the namespace owns; systemd needs them to set itself up.
const SYSTEMD_CAPS = [...DEFAULT_CAPS, 'CAP_SYS_ADMIN', 'CAP_NET_ADMIN', 'CAP_SYS_PTRACE', 'CAP_DAC_READ_SEARCH', 'CAP_SYS_RESOURCE', 'CAP_AUDIT_CONTROL'];

const tmpfs = (destination: string, options: string[]): SpecMount => ({ destination, type: 'tmpfs', source: 'tmpfs', options });

/**
 * A config.json for this machine's limits: no process.rlimits (raising them
 * needs CAP_SYS_RESOURCE), no linux.resources (crun loads a device eBPF
 * program for it and fails on RLIMIT_MEMLOCK), /sys/fs/cgroup mounted rw so
 * a delegated cgroup is writable inside.
 */
export function buildSpec(opts: SpecOptions): Spec {
  const caps = opts.systemd ? SYSTEMD_CAPS : DEFAULT_CAPS;
  const namespaces = ['pid', 'network', 'ipc', 'uts', 'mount', ...(opts.userns ? ['user', 'cgroup'] : [])].map((type) => ({ type }));
  const mounts: SpecMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    tmpfs('/dev', ['nosuid', 'strictatime', 'mode=755', 'size=65536k']),
    // No gid=5: a busybox rootfs may not map it, and devpts refuses an unmapped gid.
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
    tmpfs('/dev/shm', ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k']),
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'rw'] },
  ];
  if (opts.systemd) mounts.push(tmpfs('/run', ['nosuid', 'nodev', 'mode=755']), tmpfs('/run/lock', ['nosuid', 'nodev', 'noexec']), tmpfs('/tmp', ['nosuid', 'nodev', 'mode=1777']));
  const env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm', ...(opts.systemd ? ['container=oci'] : []), ...(opts.env ?? [])];
  const spec: Spec = {
    ociVersion: '1.0.2',
    process: {
      terminal: opts.terminal ?? false,
      user: { uid: 0, gid: 0 },
      args: opts.args,
      env,
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      noNewPrivileges: !opts.systemd,
    },
    root: { path: opts.rootfs, readonly: opts.readonlyRoot ?? false },
    hostname: 'oci-userns-e2e',
    mounts,
    linux: {
      namespaces,
      maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
  if (opts.userns) {
    const map = [{ containerID: 0, hostID: opts.userns.hostId, size: opts.userns.size }];
    spec.linux!.uidMappings = map;
    spec.linux!.gidMappings = map;
  }
  if (opts.cgroupsPath) spec.linux!.cgroupsPath = opts.cgroupsPath;
  if (opts.hooks) spec.hooks = opts.hooks;
  if (opts.annotations) spec.annotations = opts.annotations;
  return spec;
}

/** Writes dir/config.json; returns the bundle directory. */
export function writeBundle(dir: string, spec: Spec): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, 1));
  return dir;
}

// --------------------------------------------------------------------- hooks

/** A config file for the built program: state dir and log in `dir`, plus overrides (keys of lib/config/config.ts). */
export function writeProgramConfig(dir: string, overrides: Record<string, unknown> = {}): { path: string; stateDir: string; logFile: string } {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const stateDir = join(dir, 'state');
  const logFile = join(dir, 'oci-userns.log');
  const path = join(dir, 'oci-userns.json');
  writeFileSync(path, JSON.stringify({ stateDir, logFile, ...overrides }));
  return { path, stateDir, logFile };
}

/** The built program as an OCI hook for `stage`, configured by the file at `configPath`. */
export function programHook(stage: string, configPath: string): SpecHook {
  return { path: process.execPath, args: ['node', PROGRAM, 'hook', stage], env: [`OCI_USERNS_CONFIG=${configPath}`, 'PATH=/usr/sbin:/usr/bin:/sbin:/bin'] };
}

/** The built program at each of `stages` (createRuntime and poststop by default), configured by the file at `configPath`. */
export function programHooks(configPath: string, stages = ['createRuntime', 'poststop']): Spec['hooks'] {
  return Object.fromEntries(stages.map((stage) => [stage, [programHook(stage, configPath)]]));
}

/**
 * Closes the rootfs's parent to every host user but the range (0700, owned
 * by the range's host root hostId:hostId): the safety rule's way to an
 * ID-mapped rootfs (README "ID-mapped rootfs"); container root can still
 * reach the rootfs. Returns the rootfs.
 */
export function closeParentToRange(rootfs: string, hostId: number): string {
  chownSync(dirname(rootfs), hostId, hostId);
  chmodSync(dirname(rootfs), 0o700);
  return rootfs;
}

/**
 * The least a createRuntime hook can do for systemd: chown the container's
 * cgroup directory and cgroup.procs, cgroup.threads, cgroup.subtree_control
 * to uid:gid, in sh. The floor that bench:boot compares the real hook to.
 */
export function cgroupChownHook(dir: string, uid: number, gid: number): SpecHook {
  const path = join(dir, 'cgroup-chown-hook.sh');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(
    path,
    `#!/bin/sh
set -e
pid=$(sed -n 's/.*"pid": *\\([0-9][0-9]*\\).*/\\1/p')
cgroup=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
dir="/sys/fs/cgroup$cgroup"
chown ${uid}:${gid} "$dir" "$dir/cgroup.procs" "$dir/cgroup.threads" "$dir/cgroup.subtree_control"
`,
    { mode: 0o755 },
  );
  return { path, env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] };
}

/**
 * argv that runs a shell script where runtimes and engines see cgroup2 at
 * /sys/fs/cgroup: the host itself when it is unified, else a fresh private
 * mount namespace (for suites that keep a container's whole life, run to
 * rm, in one script; Session keeps one namespace across calls instead).
 */
export function cgroup2ShellArgv(script: string, host = detectCgroupHost()): string[] {
  return host.kind === 'unified'
    ? ['sh', '-c', script]
    : ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && exec sh -c "$0"', script];
}

// ------------------------------------------------------------------- session

export type RunResult = { exitCode: number | undefined; stdout: string; stderr: string; all: string; timedOut: boolean };

/**
 * Where runtime commands run. On a unified host, the host itself. On a
 * hybrid host, one private mount namespace (held open by a process of
 * ours) whose /sys/fs/cgroup is the cgroup2 hierarchy; every command of the
 * session enters it, so run, exec, kill and delete, and the hooks the
 * runtime starts, all see the same mounts. The holder exits when this
 * process dies (its stdin closes), so a killed test leaves no namespace.
 */
export class Session {
  private constructor(
    readonly host: CgroupHost,
    private readonly holder?: ChildProcess,
  ) {}

  static async open(host = detectCgroupHost()): Promise<Session> {
    if (host.kind === 'v1') throw new Error('no cgroup2 hierarchy: check skipReason() first');
    if (host.kind === 'unified') return new Session(host);
    const holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && echo ready && exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      holder.stderr!.on('data', (chunk) => (err += chunk));
      holder.stdout!.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`cannot make a mount namespace with cgroup2 at /sys/fs/cgroup (exit ${code}): ${err.trim()}`)));
    });
    return new Session(host, holder);
  }

  /** argv that runs `argv` inside the session, for callers that spawn it themselves. */
  wrap(argv: string[]): string[] {
    return this.holder ? ['nsenter', '-t', String(this.holder.pid), '-m', '--', ...argv] : argv;
  }

  async run(argv: string[], options: ExecaOptions = {}): Promise<RunResult> {
    const [command, ...args] = this.wrap(argv);
    const result = await execa(command!, args, { reject: false, all: true, stdin: 'ignore', timeout: 120_000, ...options });
    const text = (value: unknown) => (typeof value === 'string' ? value : '');
    return { exitCode: result.exitCode, stdout: text(result.stdout), stderr: text(result.stderr), all: text(result.all), timedOut: Boolean(result.timedOut) };
  }

  close(): void {
    this.holder?.stdin?.end();
    this.holder?.kill();
  }
}

// ------------------------------------------------------------------- runtime

/**
 * runc or crun, run in a Session. Remembers every container it created so
 * cleanup() can delete them, whatever happened in the test.
 */
export class Runtime {
  private readonly ids = new Set<string>();
  private readonly outputFiles = new Map<string, string>();

  constructor(
    readonly session: Session,
    readonly name: RuntimeName,
  ) {}

  /**
   * `run`, stdin /dev/null. Attached: the container's output is the
   * result's. Detached (`run -d`): the container keeps the stdout and stderr
   * it was given, so they go to a file (result.outputFile, removed by
   * delete) rather than to pipes that would hold this call until the
   * container exits; the result holds what was written until run returned.
   */
  async run(id: string, bundle: string, options: { detach?: boolean; timeout?: number } = {}): Promise<RunResult & { outputFile?: string }> {
    this.ids.add(id);
    const argv = [this.name, 'run', ...(options.detach ? ['-d'] : []), '--bundle', bundle, id];
    const timeout = options.timeout ?? 120_000;
    if (!options.detach) return this.session.run(argv, { timeout });
    const outputFile = join(tmpdir(), `oci-userns-e2e-${id}.out`);
    this.outputFiles.set(id, outputFile);
    const fd = openSync(outputFile, 'w', 0o600);
    let result: Pick<RunResult, 'exitCode' | 'timedOut'>;
    try {
      // A plain descriptor: the container inherits it (a pipe would hold this call until the container exits).
      const [command, ...args] = this.session.wrap(argv);
      const child = spawn(command!, args, { stdio: ['ignore', fd, fd] });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
      result = await new Promise((resolve) => {
        child.once('error', () => resolve({ exitCode: undefined, timedOut: false }));
        child.once('close', (code, signal) => resolve({ exitCode: code ?? undefined, timedOut: signal === 'SIGKILL' }));
      });
      clearTimeout(timer);
    } finally {
      closeSync(fd);
    }
    const output = readFileSync(outputFile, 'utf8');
    return { ...result, stdout: output, stderr: output, all: output, outputFile };
  }

  /**
   * `run` with a pseudo-terminal (spec process.terminal: true), under
   * script(1): what PID 1 prints on its console goes to logFile.
   */
  async runWithConsole(id: string, bundle: string, logFile: string, timeout = 120_000): Promise<RunResult & { console: string }> {
    this.ids.add(id);
    const command = `exec ${this.name} run --bundle '${bundle}' '${id}'`;
    const result = await this.session.run(['script', '-qfec', command, logFile], { timeout });
    return { ...result, console: existsSync(logFile) ? readFileSync(logFile, 'utf8') : '' };
  }

  exec(id: string, argv: string[], options: ExecaOptions = {}): Promise<RunResult> {
    return this.session.run([this.name, 'exec', id, ...argv], options);
  }

  kill(id: string, signal = 'TERM'): Promise<RunResult> {
    return this.session.run([this.name, 'kill', id, signal]);
  }

  async delete(id: string, force = true): Promise<RunResult> {
    const result = await this.session.run([this.name, 'delete', ...(force ? ['-f'] : []), id]);
    if (result.exitCode === 0) this.forget(id);
    return result;
  }

  /** The runtime's state of a container, or undefined when it does not know it. */
  async state(id: string): Promise<{ id: string; pid: number; status: string; bundle: string } | undefined> {
    const result = await this.session.run([this.name, 'state', id]);
    return result.exitCode === 0 ? JSON.parse(result.stdout) : undefined;
  }

  /** Deletes (forcibly) every container this object started; ignores those already gone. */
  async cleanup(): Promise<void> {
    for (const id of [...this.ids]) {
      const result = await this.delete(id);
      if (result.exitCode !== 0 && !/does not exist|not exist|No such file/i.test(result.all)) console.error(`cleanup: ${this.name} delete -f ${id}: ${result.all.trim()}`);
      this.forget(id);
    }
  }

  private forget(id: string): void {
    this.ids.delete(id);
    const file = this.outputFiles.get(id);
    if (file) rmSync(file, { force: true });
    this.outputFiles.delete(id);
  }
}

// ------------------------------------------------------------------- systemd

/**
 * Waits for systemd in a container to finish booting: `systemctl
 * is-system-running --wait` through `exec`, repeated while the bus is not
 * up yet. Returns the state it printed (running, degraded, ...).
 */
export async function waitForSystemd(runtime: Runtime, id: string, timeoutMs = 90_000): Promise<{ state: string; output: string }> {
  const deadline = Date.now() + timeoutMs;
  let output = '';
  while (Date.now() < deadline) {
    const result = await runtime.exec(id, ['systemctl', 'is-system-running', '--wait'], { timeout: Math.max(1000, deadline - Date.now()) });
    output = result.all.trim();
    const state = result.stdout.trim().split('\n').pop() ?? '';
    if (state && !/offline|starting|initializing/.test(state)) return { state, output };
    // Before PID 1 opens its bus, systemctl fails at once ("Failed to connect to bus").
    if (!(await runtime.state(id))) return { state: 'gone', output };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { state: 'timeout', output };
}
