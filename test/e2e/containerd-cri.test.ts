// End to end: systemd pods through containerd's CRI, driven from Node as
// kubelet drives it, with oci-userns as the RuntimeClass handler. The
// containerd is the cached 1.7 (scripts/containerd-cache.sh), private to
// the suite (test/e2e/cri/containerd.ts); the images are the Debian
// systemd rootfs and a busybox pause, imported as OCI archives.
//
// Case A: kubelet gives the pod a user namespace (`userns_options` POD, as
// with hostUsers: false); the shim completes the systemd container (hooks,
// cgroup namespace, writable cgroup, tmpfs /run and /run/lock), systemd
// boots, and StopContainer stops it through SIGRTMIN+3.
//
// Case B: no userns_options; the pod asks oci-userns for a user namespace
// (pod annotation io.oci-userns.userns=auto, passed through pod_annotations):
// the sandbox gets the range, the systemd container joins the sandbox's user
// namespace; crun is the shim's runtime (runc before 1.3 cannot start it:
// lib/shim/runtime-version.ts).
//
// Heavy (a containerd, two image imports, a systemd boot): run this file
// alone, not in a loop.

import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildProgram, debianTarball, detectCgroupHost, PROGRAM, skipLoudly, skipReason, Workspace } from './harness';
import { Containerd, HANDLER, PAUSE_IMAGE } from './cri/containerd';
import { busyboxTarball, ociArchive } from './cri/oci-image';

const SUITE = 'containerd CRI';
const DEBIAN_IMAGE = 'localhost/oci-userns/debian-systemd:1';
// Far from the other suites' pools and from podman's --userns=auto.
const POOL_START = 2_013_265_920;
/** Where "kubelet" maps the case A pod (its own range, outside the shim's pool). */
const KUBELET_USERNS_HOST_ID = 1_744_830_464;
const CGROUP_PARENT = `/oci-userns-e2e-${process.pid}`;

type Message = Record<string, any>;

const test = suite(SUITE);

const skip =
  (await skipReason({ runtimes: ['runc', 'crun'], commands: ['unshare', 'nsenter', 'apt-get', 'dpkg'], files: [{ path: '/usr/lib/cni/bridge', hint: 'apt-get install containernetworking-plugins' }] })) ??
  (await buildProgram().then(
    () => undefined,
    (error: Error) => `cannot build the program: ${error.message}`,
  ));

let work: Workspace | undefined;
let node: Containerd | undefined;
let shimConfig = { path: '', stateDir: '', logFile: '' };
let crunRuntime = '';

/** The shim's config: its own state, log and pool; policy systemd; the real runtime behind the cpu wrapper where needed. */
function writeShimConfig(dir: string, runtime: string) {
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

const registryEntries = (): Array<Record<string, any>> => {
  const file = join(shimConfig.stateDir, 'ranges.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).entries : [];
};

const cri = () => node!.client!;

/** What kubelet sends for a pod: metadata, a log directory, DNS (RunPodSandbox fails without it), a cgroup parent, namespaces. */
function podConfig(name: string, namespaceOptions: Message, annotations: Record<string, string> = {}): Message {
  return {
    metadata: { name, uid: `${name}-${process.pid}`, namespace: 'default', attempt: 0 },
    hostname: name,
    log_directory: work!.path('pods', name),
    dns_config: { servers: ['10.88.77.1'], searches: [], options: [] },
    annotations,
    labels: {},
    linux: { cgroup_parent: `${CGROUP_PARENT}/${name}`, security_context: { namespace_options: namespaceOptions } },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** ExecSync `systemctl is-system-running --wait` until it names a settled state; returns it and the ms it took from `since`. */
async function waitForSystemd(containerId: string, since: number, timeoutMs = 90_000): Promise<{ state: string; ms: number; output: string }> {
  const deadline = Date.now() + timeoutMs;
  let output = '';
  while (Date.now() < deadline) {
    try {
      const result = await cri().call<Message>('ExecSync', { container_id: containerId, cmd: ['systemctl', 'is-system-running', '--wait'], timeout: 60 }, 70_000);
      output = `${Buffer.from(result.stdout).toString()}${Buffer.from(result.stderr).toString()}`.trim();
      const state = Buffer.from(result.stdout).toString().trim().split('\n').pop() ?? '';
      if (state && !/offline|starting|initializing/.test(state)) return { state, ms: Date.now() - since, output };
    } catch (error) {
      output = (error as Error).message;
      const status = await cri().call<Message>('ContainerStatus', { container_id: containerId });
      if (status.status.state !== 'CONTAINER_RUNNING') return { state: `container ${status.status.state} (exit ${status.status.exit_code}): ${output}`, ms: Date.now() - since, output };
    }
    await sleep(100);
  }
  return { state: 'timeout', ms: Date.now() - since, output };
}

/** Pods the test made, removed in teardown whatever happened. */
const pods = new Set<string>();

async function removePods(): Promise<void> {
  for (const id of pods) {
    await cri()
      .call('StopPodSandbox', { pod_sandbox_id: id })
      .catch((error: Error) => console.error(`cleanup: ${error.message}`));
    await cri()
      .call('RemovePodSandbox', { pod_sandbox_id: id })
      .catch((error: Error) => console.error(`cleanup: ${error.message}`));
    pods.delete(id);
  }
}

if (skip) {
  skipLoudly(SUITE, skip);
  test.skip(`${SUITE} (skipped: ${skip})`, () => undefined);
} else {
  // uvu drops an error thrown in a before hook; the test reports it instead.
  let setupError: unknown;
  test.before(async () => {
    try {
      await setUp();
    } catch (error) {
      setupError = error;
    }
  });
  const setUp = async () => {
    const host = detectCgroupHost();
    work = Workspace.create('oci-userns-cri-');
    const shim = work.path('bin', 'oci-userns-runtime');
    symlinkSync(PROGRAM, shim);
    shimConfig = writeShimConfig(work.path('shim'), Containerd.realRuntime(work.path('bin'), host, 'runc'));
    crunRuntime = Containerd.realRuntime(work.path('bin'), host, 'crun');
    node = await Containerd.start({ dir: work.path('containerd'), host, shim, shimConfig: shimConfig.path, runtime: 'runc' });
    const debian = await debianTarball();
    await node.importImage(await ociArchive({ rootfsTar: await busyboxTarball(join(debian, '..')), name: PAUSE_IMAGE, entrypoint: ['/bin/sleep', '2147483647'] }));
    await node.importImage(await ociArchive({ rootfsTar: debian, name: DEBIAN_IMAGE, cmd: ['/sbin/init'] }));
  };

  test.after(async () => {
    try {
      if (node?.client) await removePods();
    } finally {
      await node?.stop(CGROUP_PARENT);
      work?.remove();
    }
  });

  test('case A: userns_options POD on containerd 1.7: a systemd container through the oci-userns handler boots, and stops on SIGRTMIN+3', async () => {
    if (setupError) throw setupError;
    const mapping = [{ host_id: KUBELET_USERNS_HOST_ID, container_id: 0, length: 65536 }];
    const namespaces = { network: 'POD', pid: 'CONTAINER', ipc: 'POD', userns_options: { mode: 'POD', uids: mapping, gids: mapping } };
    const pod = podConfig('case-a', namespaces);
    const { pod_sandbox_id: podId } = await cri().call<Message>('RunPodSandbox', { config: pod, runtime_handler: HANDLER });
    pods.add(podId);
    const podStatus = await cri().call<Message>('PodSandboxStatus', { pod_sandbox_id: podId });
    assert.match(podStatus.status.network?.ip ?? '', /^10\.88\.77\./, 'the pod has an IP on the CNI bridge');

    const since = Date.now();
    const { container_id: id } = await cri().call<Message>('CreateContainer', {
      pod_sandbox_id: podId,
      sandbox_config: pod,
      config: { metadata: { name: 'systemd', attempt: 0 }, image: { image: DEBIAN_IMAGE }, command: ['/sbin/init'], log_path: 'systemd.log', linux: { security_context: { namespace_options: namespaces } } },
    });
    await cri().call('StartContainer', { container_id: id });
    const boot = await waitForSystemd(id, since);
    console.log(`case A: CreateContainer -> systemd ${boot.state}: ${boot.ms} ms`);
    assert.ok(['running', 'degraded'].includes(boot.state), `systemd reached '${boot.state}': ${boot.output}\n${readFileSync(shimConfig.logFile, 'utf8').slice(-3000)}`);

    const uidMap = await cri().call<Message>('ExecSync', { container_id: id, cmd: ['cat', '/proc/self/uid_map'], timeout: 10 });
    assert.match(Buffer.from(uidMap.stdout).toString(), new RegExp(`^\\s*0\\s+${KUBELET_USERNS_HOST_ID}\\s+65536\\s*$`), "the container is in the pod's user namespace");
    const log = readFileSync(shimConfig.logFile, 'utf8');
    assert.match(log, new RegExp(`"containerId":"${id}".*cgroup|cgroup.*"containerId":"${id}"`), `the log names the container's cgroup: ${log.slice(-2000)}`);
    assert.match(log, /delegat/, 'the log shows the cgroup delegated');

    const stopStart = Date.now();
    await cri().call('StopContainer', { container_id: id, timeout: 30 });
    const stopMs = Date.now() - stopStart;
    console.log(`case A: StopContainer: ${stopMs} ms`);
    const stopped = await cri().call<Message>('ContainerStatus', { container_id: id });
    assert.is(stopped.status.state, 'CONTAINER_EXITED');
    assert.ok(stopMs < 5000, `StopContainer took ${stopMs} ms (systemd ignores SIGTERM; SIGRTMIN+3 stops it)`);

    await cri().call('StopPodSandbox', { pod_sandbox_id: podId });
    await cri().call('RemovePodSandbox', { pod_sandbox_id: podId });
    pods.delete(podId);
    assert.equal(registryEntries(), [], 'the registry is empty after the pod is removed');
  });

  test('case B: the pod asks for a user namespace (io.oci-userns.userns=auto): the sandbox gets the range, the systemd container joins it, under crun', async () => {
    if (setupError) throw setupError;
    // Read at every shim call: from here on the handler runs crun.
    writeShimConfig(work!.path('shim'), crunRuntime);
    const namespaces = { network: 'POD', pid: 'CONTAINER', ipc: 'POD' };
    const pod = podConfig('case-b', namespaces, { 'io.oci-userns.userns': 'auto' });
    const { pod_sandbox_id: podId } = await cri().call<Message>('RunPodSandbox', { config: pod, runtime_handler: HANDLER });
    pods.add(podId);
    const podStatus = await cri().call<Message>('PodSandboxStatus', { pod_sandbox_id: podId });
    assert.match(podStatus.status.network?.ip ?? '', /^10\.88\.77\./, 'the pod has an IP on the CNI bridge');
    const [sandbox] = registryEntries();
    assert.is(sandbox?.id, podId, 'the sandbox holds the range');
    const sandboxUserns = readlinkSync(`/proc/${sandbox!.pid}/ns/user`);
    const sandboxUidMap = readFileSync(`/proc/${sandbox!.pid}/uid_map`, 'utf8');
    assert.match(sandboxUidMap, new RegExp(`^\\s*0\\s+${sandbox!.uidMappings[0].hostID}\\s+65536\\s*$`));

    const since = Date.now();
    const { container_id: id } = await cri().call<Message>('CreateContainer', {
      pod_sandbox_id: podId,
      sandbox_config: pod,
      config: { metadata: { name: 'systemd', attempt: 0 }, image: { image: DEBIAN_IMAGE }, command: ['/sbin/init'], log_path: 'systemd.log', linux: { security_context: { namespace_options: namespaces } } },
    });
    await cri().call('StartContainer', { container_id: id });
    const boot = await waitForSystemd(id, since);
    console.log(`case B: CreateContainer -> systemd ${boot.state}: ${boot.ms} ms`);
    assert.ok(['running', 'degraded'].includes(boot.state), `systemd reached '${boot.state}': ${boot.output}\n${readFileSync(shimConfig.logFile, 'utf8').slice(-3000)}`);

    const exec = async (cmd: string[]) => Buffer.from((await cri().call<Message>('ExecSync', { container_id: id, cmd, timeout: 10 })).stdout).toString();
    assert.is(await exec(['cat', '/proc/self/uid_map']), sandboxUidMap, "the container's uid_map is the sandbox's");
    assert.is((await exec(['readlink', '/proc/self/ns/user'])).trim(), sandboxUserns, "the container is in the sandbox's user namespace");
    assert.equal(
      registryEntries().map((e) => [e.id, e.joined]),
      [
        [podId, undefined],
        [id, podId],
      ],
      'one range for the pod: the app container is recorded as joined',
    );
    const log = readFileSync(shimConfig.logFile, 'utf8');
    assert.match(log, new RegExp(`"containerId":"${id}".*delegat|delegat.*"containerId":"${id}"`), `the log shows the container's cgroup delegated: ${log.slice(-2000)}`);

    const stopStart = Date.now();
    await cri().call('StopContainer', { container_id: id, timeout: 30 });
    const stopMs = Date.now() - stopStart;
    console.log(`case B: StopContainer: ${stopMs} ms`);
    assert.is((await cri().call<Message>('ContainerStatus', { container_id: id })).status.state, 'CONTAINER_EXITED');
    assert.ok(stopMs < 5000, `StopContainer took ${stopMs} ms`);

    await cri().call('StopPodSandbox', { pod_sandbox_id: podId });
    await cri().call('RemovePodSandbox', { pod_sandbox_id: podId });
    pods.delete(podId);
    assert.equal(registryEntries(), [], 'the registry is empty after the pod is removed');
    assert.equal(processesIn(sandboxUserns), [], "no process is left in the pod's user namespace");
    const mounts = (await node!.inside(['cat', '/proc/self/mountinfo'])).stdout?.toString() ?? '';
    assert.equal(mounts.split('\n').filter((line) => line.includes(podId) || line.includes(id)), [], 'no mount of the pod is left');
    const shiftDir = join(shimConfig.stateDir, 'shift');
    assert.equal(existsSync(shiftDir) ? readdirSync(shiftDir) : [], [], 'no shift state is left');
  });
}

/** Processes whose user namespace is `userns` (readlink /proc/PID/ns/user). */
function processesIn(userns: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        return readlinkSync(`/proc/${entry}/ns/user`) === userns;
      } catch {
        return false;
      }
    })
    .map(Number);
}

test.run();
