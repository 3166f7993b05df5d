// /proc/<pid>/mountinfo, parsed (proc(5)): which filesystems a process sees
// and where. Pure: callers read the file and pass its text.

export interface Mount {
  /** st_dev of the filesystem, `major:minor` (field 3): with `root`, which tree of which filesystem is mounted here. */
  device: string;
  /** Root of the mount within its filesystem (a cgroup namespace or bind mount shows a subpath). */
  root: string;
  mountPoint: string;
  /** Per-mount options (rw, ro, nosuid, ...). */
  mountOptions: string[];
  fsType: string;
  superOptions: string[];
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
const unescape = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));

export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const separator = line.indexOf(' - ');
    if (separator < 0) continue;
    const before = line.slice(0, separator).split(' ');
    const after = line.slice(separator + 3).split(' ');
    if (before.length < 6 || after.length < 3) continue;
    mounts.push({
      device: before[2]!,
      root: unescape(before[3]!),
      mountPoint: unescape(before[4]!),
      mountOptions: before[5]!.split(','),
      fsType: after[0]!,
      superOptions: after[2]!.split(','),
    });
  }
  return mounts;
}

/**
 * The mounts still visible: a later mount at the same point or at a parent
 * hides the earlier ones beneath it (mountinfo lists mounts in mount order).
 */
export function visibleMounts(mounts: Mount[]): Mount[] {
  const covers = (upper: string, lower: string) => upper === lower || upper === '/' || lower.startsWith(`${upper}/`);
  return mounts.filter((mount, i) => !mounts.slice(i + 1).some((later) => covers(later.mountPoint, mount.mountPoint)));
}

/** The visible cgroup2 mount, preferring /sys/fs/cgroup when there are several. */
export function cgroup2Mount(mountinfo: string): Mount | undefined {
  const v2 = visibleMounts(parseMountinfo(mountinfo)).filter((m) => m.fsType === 'cgroup2');
  return v2.find((m) => m.mountPoint === '/sys/fs/cgroup') ?? v2[0];
}
