// oci-userns's own configuration: /etc/containers/oci-userns.json, its
// defaults, and where its path comes from (--config, OCI_USERNS_CONFIG).

export type ShiftMode = 'auto' | 'never' | 'always-verify';
/** How the rootfs is given to container root: an ID-mapped mount where the kernel and filesystem allow it, else chown (auto); only the one or the other. */
export type ShiftMethod = 'auto' | 'idmap' | 'chown';
export type UnmappedPolicy = 'error' | 'overflow';
export type OverlapPolicy = 'refuse' | 'warn';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type ShimPolicy = 'systemd' | 'always' | 'annotation';

export interface PoolConfig {
  /** Owner (name or numeric uid) of the /etc/subuid and /etc/subgid entries to allocate from. */
  user: string;
  subuidFile: string;
  subgidFile: string;
  /** Size and alignment of an allocated block. */
  blockSize: number;
}

export interface Config {
  logFile: string;
  logLevel: LogLevel;
  /** Registry, shift journals and locks live here; root-owned, not a symlink. */
  stateDir: string;
  pool: PoolConfig;
  shift: {
    method: ShiftMethod;
    mode: ShiftMode;
    /** What to do with an id outside the old mapping: fail, or map to 65534. */
    unmapped: UnmappedPolicy;
  };
  cgroup: {
    /** Fail (instead of warn) when a systemd container's spec cannot work. */
    strict: boolean;
  };
  /** What to do when a container's host range overlaps another live container's. */
  overlap: OverlapPolicy;
  runtime: {
    /** The real OCI runtime the shim hands over to. */
    path: string;
    /** Which containers the shim gives a user namespace. */
    policy: ShimPolicy;
  };
  limits: {
    /** Largest state on stdin and config.json accepted, in bytes. */
    inputBytes: number;
    /** How long the hook waits for stdin to close. */
    stdinTimeoutMs: number;
  };
}

export const DEFAULT_CONFIG_PATH = '/etc/containers/oci-userns.json';

export const DEFAULTS: Config = {
  logFile: '/var/log/oci-userns/oci-userns.log',
  logLevel: 'info',
  stateDir: '/var/lib/oci-userns',
  pool: {
    user: 'containers',
    subuidFile: '/etc/subuid',
    subgidFile: '/etc/subgid',
    blockSize: 65536,
  },
  shift: { method: 'auto', mode: 'auto', unmapped: 'error' },
  cgroup: { strict: false },
  overlap: 'refuse',
  runtime: { path: 'runc', policy: 'systemd' },
  limits: { inputBytes: 4 * 1024 * 1024, stdinTimeoutMs: 10_000 },
};
