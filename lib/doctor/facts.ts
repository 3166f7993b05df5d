// The facts `oci-userns doctor` decides on (lib/doctor/doctor.ts), as
// lib/doctor/probe.ts gathers them from /proc, /sys, /etc, the hooks folder
// and the runtimes; and the paths it looks at.

/** What a path is, as lstat sees it; undefined fields when it does not exist. */
export interface PathFacts {
  path: string;
  exists: boolean;
  isSymlink?: boolean;
  isDirectory?: boolean;
  uid?: number;
  mode?: number;
  /** access(W_OK) for the current process. */
  writable?: boolean;
}

export interface RuntimeFacts {
  name: 'runc' | 'crun';
  /** First line of `NAME --version`, undefined when not found. */
  version?: string;
}

export interface HookFileFacts {
  name: string;
  /** File text, undefined when missing. */
  text?: string;
}

export interface ProgramFacts {
  path: string;
  executable: boolean;
  /** The #! line, without "#!". */
  interpreter?: string;
  interpreterExecutable?: boolean;
}

export interface HooksFacts {
  dir: string;
  files: HookFileFacts[];
  /** The programs the valid files point at, by path. */
  programs: Record<string, ProgramFacts>;
}

export interface ConfigFacts {
  path: string;
  /** Named by --config or OCI_USERNS_CONFIG rather than the default path. */
  explicit: boolean;
  exists: boolean;
  /** Why it cannot be used; undefined when it loaded. */
  problem?: string;
}

/** Whether a directory rootfs on the filesystem holding `path` can be idmapped (the helper's probe), or why not. */
export interface IdmapFacts {
  path: string;
  /** The helper (lib/rootfs/idmap-mount.ts findIdmapHelper); absent when it is not installed. */
  helper?: string;
  supported: boolean;
  /** The helper's line, or why the probe could not run. */
  reason?: string;
  /** Whether an overlay over an idmapped lower layer mounts there (lib/rootfs/overlay-probe.ts); absent when not probed (no helper, or directories refused). */
  overlay?: { supported: boolean; reason?: string };
}

export interface HostFacts {
  mountinfo: string;
  /** cgroup.controllers of the cgroup2 mount, when there is one. */
  cgroup2Controllers?: string;
  /** /sys/kernel/cgroup/delegate, undefined when the kernel lacks it. */
  delegate?: string;
  maxUserNamespaces?: string;
  unprivilegedUsernsClone?: string;
  pool: { user: string; blockSize: number; subuidFile: string; subgidFile: string };
  subuid?: string;
  subgid?: string;
  passwd?: string;
  runtimes: RuntimeFacts[];
  hooks: HooksFacts;
  stateDir: PathFacts;
  logFile: PathFacts;
  logDir: PathFacts;
  config: ConfigFacts;
  idmap: IdmapFacts;
}

export const HOOK_FILE_NAMES = [
  'oci-userns-annotation-createruntime.json',
  'oci-userns-annotation-poststop.json',
  'oci-userns-systemd-createruntime.json',
  'oci-userns-systemd-poststop.json',
] as const;

/** Where doctor looks for our files without --hooks-dir. */
export const DEFAULT_HOOKS_DIRS = ['/usr/share/containers/oci/hooks.d', '/etc/containers/oci/hooks.d'] as const;
/** The one folder podman 4 and CRI-O read with no hooks_dir configured (measured with podman 4.3.1). */
export const ENGINE_DEFAULT_HOOKS_DIR = '/usr/share/containers/oci/hooks.d';
