// Pods whose user namespace the shim makes (a CRI pod annotated
// io.oci-userns.userns=auto, or policy always): the sandbox gets the range
// and a new user namespace like any container; each app container joins
// the sandbox's user namespace by path, with its mappings (runc wants them
// in the spec even when joining), so that the IPC and UTS namespaces it
// joins (the sandbox's, made inside that user namespace) are its own to
// mount mqueue in, and the pod holds one range, released with the sandbox.
// The hook records an app container as `joined` to the sandbox's entry.

import { HostError, RefusedError } from '../errors';
import type { Logger } from '../log/logger';
import { processNamespacePath, specNamespace, type PodRole } from '../oci/pod';
import type { Spec } from '../oci/spec';
import { listRanges, type RangeEntry } from '../ranges/ranges';
import { findRuntimeContainer } from '../ranges/runtime-state';
import { isRunning } from '../sys/process-identity';
import { identifyRuntime, joinsHostNetworkAfterUserNamespace, runcJoinLimit } from './runtime-version';

export interface PodSandbox {
  /** The sandbox's registry entry: the pod's range. */
  entry: RangeEntry;
  /** Its init process, alive. */
  pid: number;
}

/**
 * The sandbox of an app container when the shim gave the pod its user
 * namespace: its registry entry (source shim, not itself joined) and its
 * init process, from the entry (recorded by the hook at the sandbox's
 * createRuntime) or else the runtime's state under `runtimeRoot`.
 * Undefined when the pod's user namespace is not the shim's.
 * Throws HostError when the sandbox is registered but not running.
 */
export async function findPodSandbox(opts: { stateDir: string; role: PodRole; containerId?: string; runtimeRoot?: string; procRoot?: string }): Promise<PodSandbox | undefined> {
  const { role, procRoot } = opts;
  const entry = (await listRanges(opts)).find((e) => e.id === role.sandboxId && e.source === 'shim' && e.joined === undefined);
  if (entry === undefined) return undefined;
  if (entry.pid !== undefined && isRunning(entry.pid, entry.pidStart, procRoot)) return { entry, pid: entry.pid };
  const state = opts.runtimeRoot === undefined ? undefined : await findRuntimeContainer([opts.runtimeRoot], role.sandboxId);
  if (state?.pid !== undefined && isRunning(state.pid, state.pidStart, procRoot)) return { entry, pid: state.pid };
  throw new HostError(`container ${opts.containerId ?? '?'}: its pod's sandbox ${role.sandboxId} has a user namespace from oci-userns but is not running`, {
    containerId: opts.containerId,
    hint: 'restart the pod (the sandbox holds the user namespace its containers join)',
  });
}

/**
 * An app container of a pod without the shim's user namespace must not get
 * one of its own: it joins the sandbox's IPC namespace, which it would not
 * own ("error mounting \"mqueue\" ... operation not permitted"). The hint
 * is the engine's way to give a pod its user namespace: CRI-O makes a pod's
 * namespaces (pinns) before any container runs, so there only CRI-O's own
 * userns-mode can.
 */
export function ownRangeInPodError(role: PodRole, containerId: string | undefined): RefusedError {
  const hint =
    role.engine === 'cri-o'
      ? 'give the whole pod a user namespace with the pod annotation io.kubernetes.cri-o.userns-mode: "auto" (CRI-O makes the pod\'s namespaces before the shim runs); or annotate the container io.oci-userns.userns=off'
      : 'give the whole pod a user namespace: annotate the pod io.oci-userns.userns=auto (and pass io.oci-userns.* in the handler\'s pod_annotations), or use hostUsers: false on containerd 1.7; or annotate the container io.oci-userns.userns=off';
  return new RefusedError(`container ${containerId ?? '?'} of pod sandbox ${role.sandboxId} would get a user namespace of its own, but it joins the pod's namespaces, which its sandbox's user namespace owns`, { containerId, hint });
}

/**
 * What the runtime cannot do with this finished spec, decided at create
 * because later commands (exec) may reach the runtime without the shim:
 * `refuse` when starting it would fail (joining a user namespace by path
 * and then a network namespace the host's owns, as a pod's app container
 * does), `warn` when only exec into it will. For a spec whose user
 * namespace the shim made (new, or the pod's): a network namespace it
 * names by path is then the engine's, made in the host's user namespace.
 */
export async function runtimeJoinCheck(opts: { spec: Spec; runtime: string; stateDir: string; env: NodeJS.ProcessEnv; logger?: Logger }): Promise<{ refuse?: string; warn?: string }> {
  const user = specNamespace(opts.spec, 'user');
  const network = specNamespace(opts.spec, 'network');
  if (user === undefined || !network?.path) return {};
  const runtime = await identifyRuntime({ path: opts.runtime, stateDir: opts.stateDir, env: opts.env, logger: opts.logger });
  if (joinsHostNetworkAfterUserNamespace(runtime)) return {};
  return user.path ? { refuse: runcJoinLimit(runtime) } : { warn: runcJoinLimit(runtime) };
}

/** The user namespace path an app container joins. */
export const sandboxUserNamespace = (sandbox: PodSandbox) => processNamespacePath(sandbox.pid, 'user');
