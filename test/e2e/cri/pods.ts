// What the CRI suite and bench/cri.ts share: a node (a private containerd
// with the oci-userns handler and the shim's own config, the pause and
// Debian systemd images imported), the two kinds of pod (case A: kubelet's
// userns_options; case B: the pod annotated io.oci-userns.userns=auto), and
// booting a systemd container in one as kubelet would.

import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { debianTarball, detectCgroupHost, PROGRAM, Workspace } from '../harness';
import { Containerd, PAUSE_IMAGE } from './containerd';
import type { CriClient } from './cri-client';
import { busyboxTarball, ociArchive } from './oci-image';

export type Message = Record<string, any>;

export const DEBIAN_IMAGE = 'localhost/oci-userns/debian-systemd:1';
// Far from the other suites' pools and from podman's --userns=auto.
const POOL_START = 2_013_265_920;
/** Where "kubelet" maps the case A pod (its own range, outside the shim's pool). */
export const KUBELET_USERNS_HOST_ID = 1_744_830_464;

export interface ShimConfig {
  path: string;
  stateDir: string;
  logFile: string;
}

/** The shim's config: its own state, log and pool; policy systemd; `runtime` as runtime.path. Read at every shim call, so rewriting it switches the runtime. */
export function writeShimConfig(dir: string, runtime: string): ShimConfig {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const line = `0:${POOL_START}:${4 * 65536}\n`;
  writeFileSync(join(dir, 'subuid'), line);
  writeFileSync(join(dir, 'subgid'), line);
  const config = {
    stateDir: join(dir, 'state'),
    logFile: join(dir, 'oci-userns.log'),
    logLevel: 'debug',
    pool: { user: '0', subuidFile: join(dir, 'subuid'), subgidFile: join(dir, 'subgid') },
    runtime: { path: runtime, policy: 'systemd' },
  };
  writeFileSync(join(dir, 'oci-userns.json'), JSON.stringify(config));
  return { path: join(dir, 'oci-userns.json'), stateDir: config.stateDir, logFile: config.logFile };
}

export interface CriNode {
  node: Containerd;
  shimConfig: ShimConfig;
  /** runtime.path values for the shim: runc and crun, behind the wrappers this host needs. */
  runtimes: { runc: string; crun: string };
}

/** Starts the node in `work` (the handler running runc first) and imports the images. */
export async function startCriNode(work: Workspace): Promise<CriNode> {
  const host = detectCgroupHost();
  // As install.sh lays it out: the shim's front, and the program beside it.
  const shim = work.path('bin', 'oci-userns-runtime');
  symlinkSync(join(import.meta.dirname, '..', '..', '..', 'bin', 'oci-userns-runtime'), shim);
  symlinkSync(PROGRAM, work.path('bin', 'oci-userns'));
  const runtimes = { runc: Containerd.realRuntime(work.path('bin'), host, 'runc'), crun: Containerd.realRuntime(work.path('bin'), host, 'crun') };
  const shimConfig = writeShimConfig(work.path('shim'), runtimes.runc);
  const node = await Containerd.start({ dir: work.path('containerd'), host, shim, shimConfig: shimConfig.path, runtime: 'runc' });
  const debian = await debianTarball();
  await node.importImage(await ociArchive({ rootfsTar: await busyboxTarball(join(debian, '..')), name: PAUSE_IMAGE, entrypoint: ['/bin/sleep', '2147483647'] }));
  await node.importImage(await ociArchive({ rootfsTar: debian, name: DEBIAN_IMAGE, cmd: ['/sbin/init'] }));
  return { node, shimConfig, runtimes };
}

export type PodCase = 'A' | 'B';

/** The namespace options and pod annotations of each case. */
export function podCase(kind: PodCase): { namespaces: Message; annotations: Record<string, string> } {
  if (kind === 'B') return { namespaces: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' }, annotations: { 'io.oci-userns.userns': 'auto' } };
  const mapping = [{ host_id: KUBELET_USERNS_HOST_ID, container_id: 0, length: 65536 }];
  return { namespaces: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', userns_options: { mode: 'POD', uids: mapping, gids: mapping } }, annotations: {} };
}

/** What kubelet sends for a pod: metadata, a log directory, DNS (RunPodSandbox fails without it), a cgroup parent, namespaces. */
export function podConfig(opts: { name: string; logDirectory: string; cgroupParent: string; namespaces: Message; annotations?: Record<string, string> }): Message {
  return {
    metadata: { name: opts.name, uid: `${opts.name}-${process.pid}`, namespace: 'default', attempt: 0 },
    hostname: opts.name,
    log_directory: opts.logDirectory,
    dns_config: { servers: ['10.88.77.1'], searches: [], options: [] },
    annotations: opts.annotations ?? {},
    labels: {},
    linux: { cgroup_parent: `${opts.cgroupParent}/${opts.name}`, security_context: { namespace_options: opts.namespaces } },
  };
}

/** CreateContainer and StartContainer of /sbin/init from the Debian image, as kubelet asks (no mounts beyond its own). */
export async function startSystemdContainer(cri: CriClient, podId: string, pod: Message, namespaces: Message): Promise<string> {
  const { container_id: id } = await cri.call<Message>('CreateContainer', {
    pod_sandbox_id: podId,
    sandbox_config: pod,
    config: { metadata: { name: 'systemd', attempt: 0 }, image: { image: DEBIAN_IMAGE }, command: ['/sbin/init'], log_path: 'systemd.log', linux: { security_context: { namespace_options: namespaces } } },
  });
  await cri.call('StartContainer', { container_id: id });
  return id;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** ExecSync `systemctl is-system-running --wait` until it names a settled state; returns it and the ms it took from `since`. */
export async function waitForSystemd(cri: CriClient, containerId: string, since: number, timeoutMs = 90_000): Promise<{ state: string; ms: number; output: string }> {
  const deadline = Date.now() + timeoutMs;
  let output = '';
  while (Date.now() < deadline) {
    try {
      const result = await cri.call<Message>('ExecSync', { container_id: containerId, cmd: ['systemctl', 'is-system-running', '--wait'], timeout: 60 }, 70_000);
      output = `${Buffer.from(result.stdout).toString()}${Buffer.from(result.stderr).toString()}`.trim();
      const state = Buffer.from(result.stdout).toString().trim().split('\n').pop() ?? '';
      if (state && !/offline|starting|initializing/.test(state)) return { state, ms: Date.now() - since, output };
    } catch (error) {
      output = (error as Error).message;
      const status = await cri.call<Message>('ContainerStatus', { container_id: containerId });
      if (status.status.state !== 'CONTAINER_RUNNING') return { state: `container ${status.status.state} (exit ${status.status.exit_code}): ${output}`, ms: Date.now() - since, output };
    }
    await sleep(100);
  }
  return { state: 'timeout', ms: Date.now() - since, output };
}
