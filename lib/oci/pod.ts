// Which part of a Kubernetes pod a container is, from the annotations the
// CRI runtimes write into config.json (pure, no I/O). containerd's CRI
// plugin writes io.kubernetes.cri.container-type (sandbox | container) and
// io.kubernetes.cri.sandbox-id (pkg/cri/annotations); CRI-O writes
// io.kubernetes.cri-o.ContainerType and io.kubernetes.cri-o.SandboxID
// (pkg/annotations). A sandbox's sandbox id is its own container id.

import type { Spec, SpecNamespace } from './spec';

export const CONTAINERD_CONTAINER_TYPE = 'io.kubernetes.cri.container-type';
export const CONTAINERD_SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';
export const CRIO_CONTAINER_TYPE = 'io.kubernetes.cri-o.ContainerType';
export const CRIO_SANDBOX_ID = 'io.kubernetes.cri-o.SandboxID';

export interface PodRole {
  /** The pod's sandbox (pause) container, or one of its app containers. */
  kind: 'sandbox' | 'container';
  /** The sandbox's container id, which app containers name. */
  sandboxId: string;
  engine: 'containerd' | 'cri-o';
}

/**
 * The container's place in a pod, or undefined when the spec is not a CRI
 * pod's (podman, ctr, a hand-written bundle) or its annotations are
 * incomplete (a type without a sandbox id, an unknown type).
 */
export function podRole(spec: Spec): PodRole | undefined {
  const annotations = spec.annotations ?? {};
  const engines = [
    { engine: 'containerd', type: annotations[CONTAINERD_CONTAINER_TYPE], sandboxId: annotations[CONTAINERD_SANDBOX_ID] },
    { engine: 'cri-o', type: annotations[CRIO_CONTAINER_TYPE], sandboxId: annotations[CRIO_SANDBOX_ID] },
  ] as const;
  for (const { engine, type, sandboxId } of engines) {
    if ((type === 'sandbox' || type === 'container') && sandboxId) return { kind: type, sandboxId, engine };
  }
  return undefined;
}

/** The namespace of this type in the spec, if any. */
export function specNamespace(spec: Spec, type: string): SpecNamespace | undefined {
  return spec.linux?.namespaces?.find((ns) => ns.type === type);
}

/** The path of a process's namespace of this type (proc(5), /proc/PID/ns/). */
export const processNamespacePath = (pid: number, type: 'user' | 'net' | 'ipc' | 'uts', procRoot = '/proc') => `${procRoot}/${pid}/ns/${type}`;
