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

import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { skippedUnless } from '../helpers/skip';
import { buildIdmapHelper, skipReason, Workspace } from './harness';
import { HANDLER, type Containerd } from './cri/containerd';
import { KUBELET_USERNS_HOST_ID, podCase, podConfig, startCriNode, startSystemdContainer, waitForSystemd, writeShimConfig, type Message, type PodCase, type ShimConfig } from './cri/pods';

const SUITE = 'containerd CRI';
const CGROUP_PARENT = `/oci-userns-e2e-${process.pid}`;

const skip =
  (await skipReason({ runtimes: ['runc', 'crun'], commands: ['unshare', 'nsenter', 'apt-get', 'dpkg'], files: [{ path: '/usr/lib/cni/bridge', hint: 'apt-get install containernetworking-plugins' }] })) ??
  (await buildIdmapHelper().then(
    () => undefined,
    (error: Error) => `cannot build the program: ${error.message}`,
  ));
const test = skippedUnless(suite(SUITE), SUITE, skip);

let work: Workspace | undefined;
let node: Containerd | undefined;
let shimConfig: ShimConfig = { path: '', stateDir: '', logFile: '' };
let runtimes = { runc: '', crun: '' };

const registryEntries = (): Array<Record<string, any>> => {
  const file = join(shimConfig.stateDir, 'ranges.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).entries : [];
};

const cri = () => node!.client!;

const podOf = (name: string, kind: PodCase) => {
  const { namespaces, annotations } = podCase(kind);
  return { namespaces, pod: podConfig({ name, logDirectory: work!.path('pods', name), cgroupParent: CGROUP_PARENT, namespaces, annotations }) };
};

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
  work = Workspace.create('oci-userns-cri-');
  ({ node, shimConfig, runtimes } = await startCriNode(work));
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
  const { namespaces, pod } = podOf('case-a', 'A');
  const { pod_sandbox_id: podId } = await cri().call<Message>('RunPodSandbox', { config: pod, runtime_handler: HANDLER });
  pods.add(podId);
  const podStatus = await cri().call<Message>('PodSandboxStatus', { pod_sandbox_id: podId });
  assert.match(podStatus.status.network?.ip ?? '', /^10\.88\.77\./, 'the pod has an IP on the CNI bridge');

  const since = Date.now();
  const id = await startSystemdContainer(cri(), podId, pod, namespaces);
  const boot = await waitForSystemd(cri(), id, since);
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
  writeShimConfig(work!.path('shim'), runtimes.crun);
  const { namespaces, pod } = podOf('case-b', 'B');
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
  const id = await startSystemdContainer(cri(), podId, pod, namespaces);
  const boot = await waitForSystemd(cri(), id, since);
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
  // A process of the pod may still be exiting when RemovePodSandbox returns: what is left is what stays.
  const left = await processesStayingIn(sandboxUserns, 3000);
  assert.equal(left, [], "no process is left in the pod's user namespace");
  const mounts = (await node!.inside(['cat', '/proc/self/mountinfo'])).stdout?.toString() ?? '';
  assert.equal(mounts.split('\n').filter((line) => line.includes(podId) || line.includes(id)), [], 'no mount of the pod is left');
  const shiftDir = join(shimConfig.stateDir, 'shift');
  assert.equal(existsSync(shiftDir) ? readdirSync(shiftDir) : [], [], 'no shift state is left');
});

/** The command lines of processes whose user namespace is `userns` (readlink /proc/PID/ns/user) after up to `waitMs` for them to go. */
async function processesStayingIn(userns: string, waitMs: number): Promise<string[]> {
  const inNamespace = () =>
    readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .flatMap((entry) => {
        try {
          return readlinkSync(`/proc/${entry}/ns/user`) === userns ? [`${entry}: ${readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ')}`] : [];
        } catch {
          return [];
        }
      });
  const deadline = Date.now() + waitMs;
  let left = inNamespace();
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = inNamespace();
  }
  return left;
}

test.run();
