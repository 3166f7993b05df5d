// A private containerd for the CRI suites: the cached binaries
// (scripts/containerd-cache.sh), run in its own mount and network
// namespaces (`unshare -m -n`), with cgroup2 at /sys/fs/cgroup on a hybrid
// host, its own root, state, socket and runc root under a temp dir, a CNI
// bridge of its own, and the `oci-userns` handler whose runtime binary is
// the shim. stop() removes what it made, whatever state the test left:
// containers, shims, the daemon (its namespaces and mounts go with the
// last process in them), the pods' cgroups.
//
// Facts behind the choices: ../../../../shared/testing-on-this-machine.md,
// "containerd and CRI".

import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { REPO, type CgroupHost } from '../harness';
import { CriClient } from './cri-client';

export const HANDLER = 'oci-userns';
export const NAMESPACE = 'k8s.io';
export const PAUSE_IMAGE = 'localhost/oci-userns/pause:1';

/** The directory of the cached containerd binaries (fetched on first use). */
export async function containerdBinaries(): Promise<string> {
  const { stdout } = await execa(join(REPO, 'scripts', 'containerd-cache.sh'), { timeout: 300_000 });
  return stdout.trim().split('\n').pop()!;
}

/** Whether the cgroup2 hierarchy can enable the cpu controller (this host's cannot). */
export function cgroup2HasCpu(host: CgroupHost): boolean {
  if (host.kind === 'v1') return false;
  return readFileSync(join(host.cgroup2, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('cpu');
}

/**
 * A runtime in front of the real one that drops parts of linux.resources
 * from the spec at create: `cpu` where containerd always writes cpu shares
 * and runc fails on a cgroup2 hierarchy without the cpu controller
 * ("openat2 .../cpu.weight: no such file or directory"); `devices` for
 * crun, which loads an eBPF device program for them and fails here on
 * RLIMIT_MEMLOCK ("setrlimit (RLIM_MEMLOCK)"). For crun also ociVersion
 * 1.0.2: crun 1.8.1 refuses containerd 1.7's "1.2.0" ("unknown version
 * specified"). Test-only, used on such hosts only.
 */
function writeResourceDroppingRuntime(path: string, runtime: string, drop: readonly string[]): void {
  const version = runtime === 'crun' ? 'spec.ociVersion = "1.0.2";' : '';
  writeFileSync(
    path,
    `#!/bin/sh
bundle=
prev=
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle=$arg ;; esac
  prev=$arg
done
case " $* " in
  *" create "*) [ -n "$bundle" ] && node -e '
    const fs = require("fs"); const file = process.argv[1]; const spec = JSON.parse(fs.readFileSync(file, "utf8"));
    if (spec.linux && spec.linux.resources) for (const key of ${JSON.stringify(drop)}) delete spec.linux.resources[key];
    ${version}
    fs.writeFileSync(file, JSON.stringify(spec));' "$bundle/config.json" ;;
esac
exec ${runtime} "$@"
`,
    { mode: 0o755 },
  );
}

export interface ContainerdOptions {
  /** A 0755 directory of the test's own. */
  dir: string;
  host: CgroupHost;
  /** The handler's BinaryName: the shim, by the name engines use (oci-userns-runtime). */
  shim: string;
  /** The shim's config file (OCI_USERNS_CONFIG). */
  shimConfig: string;
  /** The real runtime the shim runs, as named in the shim's config (the cpu wrapper goes in front when needed). */
  runtime: string;
}

export class Containerd {
  readonly socket: string;
  readonly runcRoot: string;
  readonly log: string;
  private daemon?: ChildProcess;
  client?: CriClient;

  private constructor(
    readonly opts: ContainerdOptions,
    readonly bin: string,
  ) {
    this.socket = join(opts.dir, 'containerd.sock');
    this.runcRoot = join(opts.dir, 'runc');
    this.log = join(opts.dir, 'containerd.log');
  }

  /**
   * The path the shim's config must name as runtime.path: the runtime, or
   * the wrapper that drops what it cannot apply on this host (cpu without
   * a cgroup2 cpu controller; devices for crun).
   */
  static realRuntime(dir: string, host: CgroupHost, runtime: 'runc' | 'crun'): string {
    const drop = [...(cgroup2HasCpu(host) ? [] : ['cpu']), ...(runtime === 'crun' ? ['devices'] : [])];
    if (drop.length === 0 && runtime === 'runc') return runtime;
    const wrapper = join(dir, `${runtime}-for-this-host`);
    writeResourceDroppingRuntime(wrapper, runtime, drop);
    return wrapper;
  }

  static async start(opts: ContainerdOptions): Promise<Containerd> {
    const node = new Containerd(opts, await containerdBinaries());
    try {
      await node.launch();
    } catch (error) {
      await node.stop();
      throw error;
    }
    return node;
  }

  private config(): string {
    const d = this.opts.dir;
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    return `version = 2
root = "${d}/root"
state = "${d}/state"
[grpc]
  address = "${this.socket}"
[ttrpc]
  address = "${this.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${d}/opt"
[${cri}]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
[${cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "${d}/cni"
[${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[${cri}.containerd.runtimes.runc.options]
  Root = "${this.runcRoot}"
[${cri}.containerd.runtimes.${HANDLER}]
  runtime_type = "io.containerd.runc.v2"
  pod_annotations = ["io.oci-userns.*"]
[${cri}.containerd.runtimes.${HANDLER}.options]
  BinaryName = "${this.opts.shim}"
  Root = "${this.runcRoot}"
`;
  }

  private writeCni(): void {
    const dir = join(this.opts.dir, 'cni');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, '10-oci-userns-e2e.conflist'),
      JSON.stringify({
        cniVersion: '0.4.0',
        name: 'oci-userns-e2e',
        plugins: [
          { type: 'bridge', bridge: 'cni-e2e0', isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.88.77.0/24' }]], dataDir: join(this.opts.dir, 'cni-ipam') } },
          { type: 'loopback' },
        ],
      }),
    );
  }

  private async launch(): Promise<void> {
    const d = this.opts.dir;
    mkdirSync(d, { recursive: true, mode: 0o755 });
    const configPath = join(d, 'containerd.toml');
    writeFileSync(configPath, this.config());
    this.writeCni();
    mkdirSync(this.runcRoot, { recursive: true, mode: 0o700 });
    chmodSync(d, 0o755);
    const swapCgroup = this.opts.host.kind === 'hybrid' ? 'umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && ' : '';
    const logFd = openSync(this.log, 'a');
    this.daemon = spawn('unshare', ['-m', '-n', '--propagation', 'private', 'sh', '-c', `${swapCgroup}ip link set lo up 2>/dev/null; exec "$0" --config "$1"`, join(this.bin, 'containerd'), configPath], {
      stdio: ['ignore', logFd, logFd],
      env: { ...process.env, PATH: `${this.bin}:${process.env.PATH}`, OCI_USERNS_CONFIG: this.opts.shimConfig },
    });
    const exited = new Promise<never>((_, reject) => this.daemon!.once('exit', (code) => reject(new Error(`containerd exited (${code}): ${this.logTail()}`))));
    exited.catch(() => undefined);
    this.client = CriClient.connect(this.socket);
    await Promise.race([this.client.waitReady(30_000), exited]);
  }

  logTail(lines = 15): string {
    return existsSync(this.log) ? readFileSync(this.log, 'utf8').trim().split('\n').slice(-lines).join('\n') : '';
  }

  /** Runs argv in containerd's mount and network namespaces (where its containers' mounts and the runc root are seen). */
  inside(argv: string[], timeout = 60_000) {
    const pid = this.daemon?.pid;
    const wrapped = pid && this.daemon!.exitCode === null ? ['nsenter', '-t', String(pid), '-m', '-n', '--', ...argv] : argv;
    return execa(wrapped[0]!, wrapped.slice(1), { reject: false, all: true, timeout, env: { ...process.env, PATH: `${this.bin}:${process.env.PATH}` } });
  }

  /** `ctr images import` of an OCI archive into the CRI namespace. */
  async importImage(archive: string): Promise<void> {
    const result = await execa(join(this.bin, 'ctr'), ['--address', this.socket, '-n', NAMESPACE, 'images', 'import', archive], { reject: false, all: true, timeout: 300_000 });
    if (result.exitCode !== 0) throw new Error(`ctr images import ${archive}: ${result.all}`);
  }

  /** Processes whose command line names this containerd's socket (its shims) or that run its runtime root. */
  private ownProcesses(): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry) || Number(entry) === this.daemon?.pid) continue;
      try {
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
        if (cmdline.includes(this.socket) || cmdline.includes(this.runcRoot)) pids.push(Number(entry));
      } catch {
        // gone meanwhile
      }
    }
    return pids;
  }

  /** Removes every container of this containerd, its shims, the daemon, and the cgroups under `cgroupParent` (relative to the cgroup2 root). */
  async stop(cgroupParent?: string): Promise<void> {
    this.client?.close();
    // The handler's runtime may be runc or crun (the shim's config names it); each lists only its own.
    for (const runtime of existsSync(this.runcRoot) ? ['runc', 'crun'] : []) {
      const list = await this.inside([runtime, '--root', this.runcRoot, 'list', '-q']);
      for (const id of list.exitCode === 0 ? (list.stdout?.toString().split('\n').filter(Boolean) ?? []) : []) await this.inside([runtime, '--root', this.runcRoot, 'delete', '-f', id]);
    }
    for (const pid of this.ownProcesses()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    if (this.daemon && this.daemon.exitCode === null) {
      const gone = new Promise((resolve) => this.daemon!.once('exit', resolve));
      this.daemon.kill('SIGTERM');
      const timer = setTimeout(() => this.daemon?.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    }
    if (cgroupParent && this.opts.host.kind !== 'v1') removeCgroupTree(join(this.opts.host.cgroup2, cgroupParent));
  }
}

/** rmdir of a cgroup subtree, deepest first (a cgroup with live processes stays, and is reported). */
export function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeCgroupTree(join(dir, entry.name));
  try {
    rmdirSync(dir);
  } catch (error) {
    console.error(`cleanup: cannot remove cgroup ${dir}: ${(error as Error).message}`);
  }
}
