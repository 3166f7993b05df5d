// What the runtime shim changes in a container's config.json, one named
// change per function, each pure (spec in, new spec out, the input left
// as it was), composed into a list by userNamespaceModifiers.

import { normalize } from 'node:path';
import type { IdMapping } from '../oci/idmap';
import { SOURCE_ANNOTATION, SYSTEMD_ANNOTATION } from '../oci/policy';
import type { Spec, SpecHook, SpecMount, SpecNamespace } from '../oci/spec';

export type SpecModifier = (spec: Spec) => Spec;

export const CGROUP_MOUNT_POINT = '/sys/fs/cgroup';

/** Adds a namespace of this type (new, without a path) unless the spec has one. */
export function addNamespace(type: string): SpecModifier {
  return (spec) => {
    const namespaces: SpecNamespace[] = spec.linux?.namespaces ?? [];
    if (namespaces.some((ns) => ns.type === type)) return spec;
    return { ...spec, linux: { ...spec.linux, namespaces: [...namespaces, { type }] } };
  };
}

export const addUserNamespace: SpecModifier = addNamespace('user');

/** Joins the namespace of this type at `path` (runtime-spec linux.namespaces), in place of any the spec names. */
export function joinNamespace(type: string, path: string): SpecModifier {
  return (spec) => {
    const others = (spec.linux?.namespaces ?? []).filter((ns) => ns.type !== type);
    return { ...spec, linux: { ...spec.linux, namespaces: [{ type, path }, ...others] } };
  };
}
export const addCgroupNamespace: SpecModifier = addNamespace('cgroup');

/** Sets the user namespace's uid and gid mappings. */
export function setIdMappings(mappings: { uidMappings: readonly IdMapping[]; gidMappings: readonly IdMapping[] }): SpecModifier {
  return (spec) => ({
    ...spec,
    linux: { ...spec.linux, uidMappings: mappings.uidMappings.map((m) => ({ ...m })), gidMappings: mappings.gidMappings.map((m) => ({ ...m })) },
  });
}

const isCgroupMount = (m: SpecMount) => normalize(m.destination) === CGROUP_MOUNT_POINT;

/**
 * Makes /sys/fs/cgroup writable, which systemd needs to create its own
 * cgroups in the subtree the hook delegates; mounts it when nothing is
 * mounted there (with a cgroup namespace, that is the container's own subtree).
 */
export const makeCgroupMountWritable: SpecModifier = (spec) => {
  const mounts = spec.mounts ?? [];
  if (!mounts.some(isCgroupMount)) {
    return { ...spec, mounts: [...mounts, { destination: CGROUP_MOUNT_POINT, type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'rw'] }] };
  }
  return {
    ...spec,
    mounts: mounts.map((m) => {
      if (!isCgroupMount(m)) return m;
      const options = (m.options ?? []).filter((o) => o !== 'ro');
      return { ...m, options: options.includes('rw') ? options : [...options, 'rw'] };
    }),
  };
};

/**
 * Mounts a tmpfs at `destination` unless something is mounted there already
 * (podman --systemd=always mounts /run and /run/lock; CRI engines do not,
 * and systemd then fails "Failed to mount tmpfs at /run: Operation not
 * permitted" from inside the user namespace).
 */
export function mountTmpfsWhenAbsent(destination: string, options: readonly string[]): SpecModifier {
  return (spec) => {
    const mounts = spec.mounts ?? [];
    if (mounts.some((m) => normalize(m.destination) === destination)) return spec;
    return { ...spec, mounts: [...mounts, { destination, type: 'tmpfs', source: 'tmpfs', options: [...options] }] };
  };
}

/** What systemd's own units and podman's systemd mode give /run and /run/lock. */
export const mountRunTmpfs: SpecModifier = mountTmpfsWhenAbsent('/run', ['nosuid', 'nodev', 'mode=755']);
export const mountRunLockTmpfs: SpecModifier = mountTmpfsWhenAbsent('/run/lock', ['nosuid', 'nodev', 'noexec']);

/** Flags the kernel locks on a mount seen from a less privileged user namespace (mount_namespaces(7), "MNT_LOCK_*"). */
const LOCKED_SHM_FLAGS = ['nosuid', 'nodev', 'noexec'];

/**
 * containerd's /dev/shm is a bind of the sandbox's nosuid, nodev, noexec
 * tmpfs. From a new user namespace those flags are locked, and a bind
 * (or its read-only remount) that leaves one out fails with EPERM (runc:
 * "mount ... /dev/shm ... flags: 0x5021: operation not permitted"). The
 * bind keeps them; /dev/shm never wants exec, devices or setuid.
 */
export const keepShmBindFlags: SpecModifier = (spec) => {
  const isShmBind = (m: SpecMount) => normalize(m.destination) === '/dev/shm' && (m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind'));
  const lacking = (m: SpecMount) => LOCKED_SHM_FLAGS.filter((flag) => !(m.options ?? []).includes(flag));
  if (!(spec.mounts ?? []).some((m) => isShmBind(m) && lacking(m).length > 0)) return spec;
  return { ...spec, mounts: spec.mounts!.map((m) => (isShmBind(m) ? { ...m, options: [...(m.options ?? []), ...lacking(m)] } : m)) };
};

/**
 * Mounting sysfs needs the network namespace to belong to the container's
 * user namespace; a network namespace joined by path (podman's, CNI's) or
 * the host's belongs to the host's, and runc fails with "mount sysfs:
 * operation not permitted". Then /sys is bind-mounted read-only instead,
 * as podman does for user-namespaced containers on a shared network.
 */
export const bindSysWhenNetworkShared: SpecModifier = (spec) => {
  const network = spec.linux?.namespaces?.find((ns) => ns.type === 'network');
  if (network !== undefined && !network.path) return spec;
  const isSysfs = (m: SpecMount) => normalize(m.destination) === '/sys' && m.type === 'sysfs';
  if (!(spec.mounts ?? []).some(isSysfs)) return spec;
  return {
    ...spec,
    mounts: spec.mounts!.map((m) => (isSysfs(m) ? { destination: m.destination, type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] } : m)),
  };
};

/**
 * A network namespace joined by path belongs to the host's user namespace,
 * so the container cannot write its net.* sysctls (runc: "open
 * /proc/sys/net/ipv4/ping_group_range: permission denied"); the engine that
 * made the namespace set it up. Those keys are dropped; the rest stay.
 */
export const dropNetSysctlsWhenNetworkJoined: SpecModifier = (spec) => {
  const network = spec.linux?.namespaces?.find((ns) => ns.type === 'network');
  const sysctl = spec.linux?.sysctl as Record<string, string> | undefined;
  if (!network?.path || sysctl === undefined) return spec;
  const kept = Object.fromEntries(Object.entries(sysctl).filter(([key]) => !key.startsWith('net.')));
  if (Object.keys(kept).length === Object.keys(sysctl).length) return spec;
  return { ...spec, linux: { ...spec.linux, sysctl: kept } };
};

export interface OurHooks {
  /** The installed oci-userns program, by its real path (runtimes exec it directly). */
  path: string;
  /** Other paths in the spec's hooks that name the same program (symlinks to it). */
  aliases?: string[];
  /** The hook's environment: runtimes give hooks none unless the spec says. */
  env: string[];
  createRuntimeTimeout?: number;
  /** The createRuntime hook to add in place of the program's: the shim serves it (lib/shim/hook-fifo.ts). */
  served?: SpecHook;
}

const HOOK_ARGS = ['oci-userns', 'hook', 'createRuntime'];

/** Whether the spec runs the program's createRuntime hook already (a hooks.d file put it there), by its path or an alias. */
export function runsOurCreateRuntimeHook(spec: Spec, ours: Pick<OurHooks, 'path' | 'aliases'>): boolean {
  const programs = new Set([ours.path, ...(ours.aliases ?? [])]);
  return (spec.hooks?.createRuntime ?? []).some((e) => programs.has(e.path) && JSON.stringify(e.args ?? []) === JSON.stringify(HOOK_ARGS));
}

/**
 * Adds `oci-userns hook createRuntime` (shift the rootfs, delegate the
 * cgroup) after the spec's own createRuntime hooks, unless that stage runs
 * the same hook already (from hooks.d); `served` in its place when the
 * shim serves it. No poststop hook: what it would do
 * for a container the shim prepared (release the range, drop a pod
 * container's shift record) the shim does when the container is gone (run
 * ending, delete), and a poststop hook would read the bundle's config.json,
 * which is the caller's again by then (lib/shim/bundle-spec.ts).
 */
export function addHooks(ours: OurHooks): SpecModifier {
  const hook: SpecHook = ours.served ?? {
    path: ours.path,
    args: [...HOOK_ARGS],
    env: [...ours.env],
    ...(ours.createRuntimeTimeout === undefined ? {} : { timeout: ours.createRuntimeTimeout }),
  };
  return (spec) => {
    if (runsOurCreateRuntimeHook(spec, ours)) return spec;
    return { ...spec, hooks: { ...spec.hooks, createRuntime: [...(spec.hooks?.createRuntime ?? []), hook] } };
  };
}

export function setAnnotation(key: string, value: string): SpecModifier {
  return (spec) => ({ ...spec, annotations: { ...spec.annotations, [key]: value } });
}

export function applyModifiers(spec: Spec, modifiers: readonly SpecModifier[]): Spec {
  return modifiers.reduce((s, modify) => modify(s), spec);
}

/**
 * What a systemd container needs in a user namespace, whoever made it: the
 * createRuntime hook (shift the rootfs, delegate the cgroup), its own cgroup
 * namespace with /sys/fs/cgroup writable, tmpfs on /run and /run/lock,
 * and the mark that tells the shim's `kill` to stop it with SIGRTMIN+3.
 */
export function systemdModifiers(hooks: OurHooks): SpecModifier[] {
  return [addCgroupNamespace, makeCgroupMountWritable, mountRunTmpfs, mountRunLockTmpfs, keepShmBindFlags, addHooks(hooks), setAnnotation(SYSTEMD_ANNOTATION, 'true')];
}

export interface UserNamespaceChange {
  uidMappings: readonly IdMapping[];
  gidMappings: readonly IdMapping[];
  /** Join this user namespace (a pod's sandbox's, /proc/PID/ns/user) instead of making one; the mappings are its. */
  userNamespacePath?: string;
  hooks: OurHooks;
  /** A systemd container also gets systemdModifiers. */
  systemd: boolean;
}

/** The shim's pipeline for a container it gives a user namespace. */
export function userNamespaceModifiers(change: UserNamespaceChange): SpecModifier[] {
  return [
    change.userNamespacePath === undefined ? addUserNamespace : joinNamespace('user', change.userNamespacePath),
    setIdMappings(change),
    addCgroupNamespace,
    bindSysWhenNetworkShared,
    dropNetSysctlsWhenNetworkJoined,
    keepShmBindFlags,
    ...(change.systemd ? systemdModifiers(change.hooks) : [addHooks(change.hooks)]),
    setAnnotation(SOURCE_ANNOTATION, 'shim'),
  ];
}
