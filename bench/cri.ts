// npm run bench:cri: the time from CreateContainer to systemd `running`
// (ExecSync `systemctl is-system-running --wait`, as the CRI suite checks
// it) for a systemd pod through containerd 1.7's CRI with the oci-userns
// handler, in the two kinds of pod:
//   A: kubelet gives the pod a user namespace (userns_options POD), runc;
//   B: the pod asks oci-userns for one (io.oci-userns.userns=auto), crun
//      (runc before 1.3 cannot start a container in it);
// interleaved round by round (a new pod each time), medians of BENCH_RUNS
// rounds (default 3) after one warm-up round; also StopContainer.
// Needs root, runc, crun, the CNI plugins; fetches containerd on first use
// (scripts/containerd-cache.sh).

import { HANDLER } from '../test/e2e/cri/containerd';
import { podCase, podConfig, startCriNode, startSystemdContainer, waitForSystemd, writeShimConfig, type CriNode, type Message, type PodCase } from '../test/e2e/cri/pods';
import { buildProgram, skipReason, Workspace } from '../test/e2e/harness';
import { median, printTable } from './measure';

const runs = Number(process.env.BENCH_RUNS ?? 3);
const CGROUP_PARENT = `/oci-userns-bench-${process.pid}`;

const skip = await skipReason({ runtimes: ['runc', 'crun'], commands: ['unshare', 'nsenter', 'apt-get', 'dpkg'], files: [{ path: '/usr/lib/cni/bridge', hint: 'apt-get install containernetworking-plugins' }] });
if (skip) {
  console.error(`bench:cri: cannot run here: ${skip}`);
  process.exit(1);
}
await buildProgram();

/** One pod of this kind: its systemd container's boot and stop times (ms); the pod is removed. */
async function onePod(cri: CriNode, work: Workspace, kind: PodCase, round: number): Promise<{ running: number; stop: number }> {
  const client = cri.node.client!;
  writeShimConfig(work.path('shim'), kind === 'A' ? cri.runtimes.runc : cri.runtimes.crun);
  const { namespaces, annotations } = podCase(kind);
  const name = `bench-${kind.toLowerCase()}-${round}`;
  const pod = podConfig({ name, logDirectory: work.path('pods', name), cgroupParent: CGROUP_PARENT, namespaces, annotations });
  const { pod_sandbox_id: podId } = await client.call<Message>('RunPodSandbox', { config: pod, runtime_handler: HANDLER });
  try {
    const since = Date.now();
    const id = await startSystemdContainer(client, podId, pod, namespaces);
    const boot = await waitForSystemd(client, id, since);
    if (!['running', 'degraded'].includes(boot.state)) throw new Error(`case ${kind}: systemd reached '${boot.state}': ${boot.output}`);
    const stopStart = Date.now();
    await client.call('StopContainer', { container_id: id, timeout: 30 });
    return { running: boot.ms, stop: Date.now() - stopStart };
  } finally {
    await client.call('StopPodSandbox', { pod_sandbox_id: podId });
    await client.call('RemovePodSandbox', { pod_sandbox_id: podId });
  }
}

const work = Workspace.create('oci-userns-bench-cri-');
let cri: CriNode | undefined;
try {
  cri = await startCriNode(work);
  const samples = { A: { running: [] as number[], stop: [] as number[] }, B: { running: [] as number[], stop: [] as number[] } };
  for (let round = 0; round < runs + 1; round++) {
    for (const kind of ['A', 'B'] as const) {
      const result = await onePod(cri, work, kind, round);
      if (round === 0) continue;
      samples[kind].running.push(result.running);
      samples[kind].stop.push(result.stop);
    }
  }
  const [a, b] = [median(samples.A.running), median(samples.B.running)];
  console.log(`CreateContainer -> systemd running through containerd 1.7 CRI, medians of ${runs} interleaved rounds (1 warm-up):`);
  printTable([
    ['pod', 'runtime', 'create -> running ms', 'StopContainer ms', 'runs (running ms)'],
    ['A: userns_options POD', 'runc', a.toFixed(0), median(samples.A.stop).toFixed(0), samples.A.running.join(' ')],
    ['B: io.oci-userns.userns=auto', 'crun', b.toFixed(0), median(samples.B.stop).toFixed(0), samples.B.running.join(' ')],
  ]);
  console.log(`B / A: ${(b / a).toFixed(2)}`);
} finally {
  await cri?.node.stop(CGROUP_PARENT);
  work.remove();
}
