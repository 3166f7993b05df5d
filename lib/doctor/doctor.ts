// `oci-userns doctor`: is this host ready to run systemd containers in user
// namespaces? Pure decisions over facts gathered by lib/doctor/probe.ts, so
// every verdict can be tested with a fake mountinfo, subuid file or hooks
// folder. Each check says what was found and, when it is not a pass, what
// to do.

import { InputError } from '../errors';
import { cgroup2Mount, parseMountinfo, visibleMounts, type Mount } from '../sys/mountinfo';
import { parseSubid, poolRanges, type IdRange } from '../ranges/subid';
import { alignedBlocks } from '../ranges/allocator';
import { schemaProblem } from '../oci/schemas';
import { type PathFacts, type RuntimeFacts, type HooksFacts, type ConfigFacts, type IdmapFacts, type HostFacts, HOOK_FILE_NAMES, ENGINE_DEFAULT_HOOKS_DIR } from './facts';
import { joinsHostNetworkAfterUserNamespace, parseRuntimeVersion, parseVersion, runcJoinLimit } from '../shim/runtime-version';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do; present for warn and fail. */
  fix?: string;
}

const pass = (name: string, detail: string): Check => ({ name, status: 'pass', detail });
const warn = (name: string, detail: string, fix: string): Check => ({ name, status: 'warn', detail, fix });
const fail = (name: string, detail: string, fix: string): Check => ({ name, status: 'fail', detail, fix });

const v1Controllers = (mount: Mount) => mount.superOptions.filter((o) => o !== 'rw' && o !== 'ro' && !o.startsWith('release_agent') && o !== 'noprefix' && o !== 'clone_children' && o !== 'xattr');

const CGROUP_FIX_HYBRID =
  'boot a pure cgroup v2 host (kernel command line systemd.unified_cgroup_hierarchy=1), or run the engine in a private mount namespace whose /sys/fs/cgroup is the cgroup2 hierarchy (README: hybrid hosts)';

export function checkCgroup(mountinfo: string, cgroup2Controllers: string | undefined): Check[] {
  const mounts = visibleMounts(parseMountinfo(mountinfo));
  const v2 = mounts.filter((m) => m.fsType === 'cgroup2');
  const v1 = mounts.filter((m) => m.fsType === 'cgroup');
  const name = 'cgroup v2';
  if (v2.length === 0) {
    return [fail(name, `no cgroup2 hierarchy is mounted (cgroup v1 only${v1.length ? `: ${v1.map((m) => m.mountPoint).join(', ')}` : ''})`, CGROUP_FIX_HYBRID)];
  }
  const root = v2.find((m) => m.mountPoint === '/sys/fs/cgroup');
  const checks: Check[] = [];
  const where = root ?? v2[0]!;
  if (root && v1.length === 0) {
    checks.push(pass(name, 'unified: cgroup2 is mounted at /sys/fs/cgroup'));
  } else if (root) {
    checks.push(warn(name, `cgroup2 is at /sys/fs/cgroup, but v1 hierarchies are mounted too (${v1.map((m) => m.mountPoint).join(', ')})`, 'unmount the v1 hierarchies or boot with cgroup_no_v1=all'));
  } else {
    const found = v1.map((m) => v1Controllers(m).join('+')).join(', ');
    checks.push(
      fail(
        name,
        `hybrid layout: cgroup2 is mounted at ${v2.map((m) => m.mountPoint).join(', ')}, while /sys/fs/cgroup holds v1 hierarchies (${found || 'none'}); runc, crun and podman use v1 here and nothing can be delegated`,
        CGROUP_FIX_HYBRID,
      ),
    );
  }
  if (cgroup2Controllers !== undefined) {
    const available = cgroup2Controllers.trim().split(/\s+/).filter(Boolean);
    const wanted = ['cpu', 'memory', 'pids'];
    const absent = wanted.filter((c) => !available.includes(c));
    const detail = `controllers in the cgroup2 hierarchy at ${where.mountPoint}: ${available.join(' ') || 'none'}`;
    if (absent.length === 0) checks.push(pass('cgroup v2 controllers', detail));
    else {
      const bound = absent.filter((c) => v1.some((m) => v1Controllers(m).includes(c)));
      checks.push(
        warn(
          'cgroup v2 controllers',
          `${detail}; missing ${absent.join(', ')}${bound.length ? ` (${bound.join(', ')} bound to v1 hierarchies)` : ''}`,
          'limits on those resources fail in containers (podman: --pids-limit -1); a pure cgroup v2 boot makes them available',
        ),
      );
    }
  }
  return checks;
}

export function checkDelegate(delegate: string | undefined): Check {
  const name = 'cgroup delegation files';
  if (delegate === undefined) {
    return warn(name, '/sys/kernel/cgroup/delegate does not exist (kernel older than 4.15)', 'use a kernel >= 4.15, which lists the files a delegated cgroup must hand over');
  }
  const files = delegate.split('\n').map((l) => l.trim()).filter(Boolean);
  if (!files.includes('cgroup.procs')) {
    return fail(name, `/sys/kernel/cgroup/delegate does not list cgroup.procs (${files.join(' ') || 'empty'})`, 'check the kernel; a delegated cgroup needs at least cgroup.procs');
  }
  return pass(name, `/sys/kernel/cgroup/delegate: ${files.join(' ')}`);
}

export function checkUserNamespaces(maxUserNamespaces: string | undefined, unprivilegedUsernsClone: string | undefined): Check {
  const name = 'user namespaces';
  if (maxUserNamespaces === undefined) {
    return fail(name, '/proc/sys/user/max_user_namespaces does not exist: the kernel has no user namespaces', 'use a kernel built with CONFIG_USER_NS=y');
  }
  const max = Number(maxUserNamespaces.trim());
  const fix = 'sysctl -w user.max_user_namespaces=15000, and put user.max_user_namespaces=15000 in /etc/sysctl.d/90-oci-userns.conf';
  if (!Number.isInteger(max)) return fail(name, `user.max_user_namespaces is '${maxUserNamespaces.trim()}', not a number`, fix);
  if (max === 0) return fail(name, 'user.max_user_namespaces = 0: user namespaces are disabled', fix);
  const clone = unprivilegedUsernsClone?.trim();
  const note = clone === '0' ? '; kernel.unprivileged_userns_clone = 0 (only unprivileged creation is off; engines run as root)' : '';
  if (max < 100) return warn(name, `user.max_user_namespaces = ${max}: few containers can run at once${note}`, fix);
  return pass(name, `user.max_user_namespaces = ${max}${note}`);
}

/** The uid of a user name in an /etc/passwd text; a numeric user is its own uid. */
export function lookupUid(passwd: string | undefined, user: string): number | undefined {
  if (/^\d+$/.test(user)) return Number(user);
  for (const line of (passwd ?? '').split('\n')) {
    const fields = line.split(':');
    if (fields[0] === user && fields[2] !== undefined && /^\d+$/.test(fields[2])) return Number(fields[2]);
  }
  return undefined;
}

export function checkSubids(kind: 'subuid' | 'subgid', file: string, text: string | undefined, user: string, uid: number | undefined, blockSize: number): Check {
  const name = `${kind} pool`;
  const fix = `add a range for '${user}' (podman --userns=auto reads the 'containers' entries too): echo '${user}:2147483647:2147483648' >> ${file}`;
  if (text === undefined) return fail(name, `${file} does not exist`, fix);
  // The allocator's own reading: a line it would reject fails here too, and
  // ranges another owner also holds (which it leaves out) are not counted.
  let ranges: IdRange[];
  try {
    ranges = poolRanges(parseSubid(text, file), new Set(uid === undefined ? [user] : [user, String(uid)])).ranges;
  } catch (error) {
    if (error instanceof InputError) return fail(name, error.message, 'fix or remove that line');
    throw error;
  }
  if (ranges.length === 0) return fail(name, `${file} has no range for '${user}'${uid !== undefined && String(uid) !== user ? ` (uid ${uid})` : ''}`, fix);
  const total = ranges.reduce((sum, r) => sum + r.count, 0);
  // The allocator's rule: whole blocks starting on a block boundary.
  const blocks = alignedBlocks(ranges, blockSize, blockSize);
  const detail = `${file}: ${ranges.length} range${ranges.length > 1 ? 's' : ''} for '${user}', ${total} ids (${ranges.map((r) => `${r.start}+${r.count}`).join(', ')}), room for ${blocks} container${blocks === 1 ? '' : 's'} of ${blockSize}`;
  if (blocks === 0) return fail(name, detail, `give '${user}' at least ${blockSize} ids in one range: ${fix.slice(fix.indexOf('echo'))}`);
  return pass(name, detail);
}

export function checkRuntimes(runtimes: RuntimeFacts[]): Check[] {
  const found = runtimes.filter((r) => r.version !== undefined);
  if (found.length === 0) {
    return [fail('OCI runtime', `neither runc nor crun is on PATH`, 'install one: apt-get install runc (or crun)')];
  }
  return found.map((r) => {
    const version = parseVersion(r.version!);
    const shown = version ? version.join('.') : r.version!;
    if (r.name === 'crun') {
      return pass('crun', `crun ${shown}: hands the container cgroup to container root by itself on cgroup v2 (the hook still shifts ownership)`);
    }
    const delegates = version !== undefined && (version[0] > 1 || (version[0] === 1 && version[1] >= 1));
    const detail = delegates
      ? `runc ${shown}: hands the cgroup to container root only with the systemd cgroup driver and a read-write cgroup mount; otherwise the oci-userns hook does it`
      : `runc ${shown}: never hands the cgroup to container root; the oci-userns hook does it`;
    const identity = parseRuntimeVersion(r.version!);
    if (joinsHostNetworkAfterUserNamespace(identity)) return pass('runc', detail);
    return warn('runc', `${detail}. ${runcJoinLimit(identity)}`, 'for pods and exec, set runtime.path in the config file to crun, or install runc 1.3 or later');
  });
}

export function checkHooks(hooks: HooksFacts): Check {
  const name = 'hooks.d files';
  const fix = `install them: ./install.sh --hooks-dir ${hooks.dir}`;
  const problems: string[] = [];
  const warnings: string[] = [];
  const programs = new Set<string>();
  if (hooks.files.every((f) => f.text === undefined)) {
    return fail(name, `${hooks.dir} holds none of the oci-userns definitions (${HOOK_FILE_NAMES.join(', ')})`, fix);
  }
  for (const expected of HOOK_FILE_NAMES) {
    const file = hooks.files.find((f) => f.name === expected);
    if (file?.text === undefined) {
      problems.push(`${expected} is missing`);
      continue;
    }
    let def: { hook?: { path?: string } };
    try {
      def = JSON.parse(file.text);
    } catch {
      problems.push(`${expected} is not valid JSON`);
      continue;
    }
    const problem = schemaProblem('hooks', def);
    if (problem) {
      problems.push(`${expected}: ${problem}`);
      continue;
    }
    programs.add(def.hook!.path!);
  }
  for (const path of programs) {
    const program = hooks.programs[path];
    if (!program?.executable) {
      problems.push(`${path} (the hook program) is missing or not executable`);
    } else if (program.interpreter !== undefined) {
      const interpreter = program.interpreter.trim();
      if (!interpreter.startsWith('/') || /^\/usr\/bin\/env\b/.test(interpreter)) {
        warnings.push(`${path} starts with #!${interpreter}; runtimes give hooks only their definition's env, so install with install.sh, which names node by absolute path`);
      } else if (!program.interpreterExecutable) {
        problems.push(`${path} runs with #!${interpreter}, which is missing or not executable`);
      }
    }
  }
  const where =
    hooks.dir === ENGINE_DEFAULT_HOOKS_DIR
      ? `${hooks.dir} (read by podman and CRI-O by default)`
      : `${hooks.dir} (read only when named: podman --hooks-dir, hooks_dir in containers.conf or crio.conf)`;
  if (problems.length > 0) return fail(name, `${where}: ${[...problems, ...warnings].join('; ')}`, fix);
  if (warnings.length > 0) return warn(name, `${where}: ${warnings.join('; ')}`, fix);
  return pass(name, `${where}: ${HOOK_FILE_NAMES.length} definitions valid, running ${[...programs].join(', ')}`);
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, '0');

// Root's, not the doctor's user's: the runtime runs the hook as root, and
// the registry trusts only a directory its effective user owns.
export function checkStateDir(dir: PathFacts): Check {
  const name = 'state directory';
  const create = `install -d -m 0700 -o root -g root ${dir.path}`;
  if (!dir.exists) return warn(name, `${dir.path} does not exist yet`, create);
  if (dir.isSymlink) return fail(name, `${dir.path} is a symlink; the registry must not follow links`, `replace it with a directory: rm ${dir.path} && ${create}`);
  if (!dir.isDirectory) return fail(name, `${dir.path} is not a directory`, `move it away, then: ${create}`);
  if (dir.uid !== 0) return fail(name, `${dir.path} is owned by uid ${dir.uid}, not root`, `chown root:root ${dir.path}`);
  if ((dir.mode ?? 0) & 0o022) return fail(name, `${dir.path} is writable by group or others (mode ${octal(dir.mode!)})`, `chmod go-w ${dir.path}`);
  return pass(name, `${dir.path}: root-owned, mode ${octal(dir.mode!)}`);
}

export function checkLog(file: PathFacts, dir: PathFacts): Check {
  const name = 'log';
  if (file.exists) {
    if (file.isSymlink || file.isDirectory) return fail(name, `${file.path} is not a regular file`, `move it away; the hook writes JSON lines to ${file.path}`);
    if (!file.writable) return fail(name, `${file.path} is not writable`, `chmod u+w ${file.path}, or set logFile in the config file`);
    return pass(name, `${file.path}: writable`);
  }
  if (!dir.exists) return warn(name, `${dir.path} does not exist; the first log line creates it`, `install -d -m 0755 ${dir.path}`);
  if (!dir.isDirectory) return fail(name, `${dir.path} is not a directory`, `move it away, or set logFile in the config file`);
  if (!dir.writable) return fail(name, `${dir.path} is not writable`, `chmod u+w ${dir.path}, or set logFile in the config file`);
  return pass(name, `${file.path}: not written yet, ${dir.path} is writable`);
}

export function checkConfig(config: ConfigFacts): Check {
  const name = 'config file';
  if (config.problem) return fail(name, config.problem, `fix it (check with: oci-userns validate --kind config-file ${config.path})`);
  if (!config.exists) return pass(name, `${config.path} does not exist: built-in defaults apply`);
  return pass(name, `${config.path}: valid`);
}

/**
 * Per rootfs kind, whether oci-userns can give it an ID-mapped mount here
 * (README "ID-mapped rootfs"): a directory rootfs (hook and shim), an
 * overlay rootfs (rebuilt over idmapped lower layers by the shim; the hook
 * alone shifts it with chown).
 */
export function checkIdmap(idmap: IdmapFacts): Check {
  const name = 'ID-mapped rootfs';
  if (!idmap.helper) {
    return warn(name, `the helper oci-userns-idmap is not installed: every rootfs is shifted with chown`, 'run install.sh (it builds the helper with make and cc into PREFIX/libexec/oci-userns/)');
  }
  if (!idmap.supported) {
    return warn(name, `directory rootfs on the filesystem of ${idmap.path}: no (${idmap.reason}), shifted with chown; overlay rootfs: no, shifted with chown`, 'use Linux >= 5.12 and keep rootfs on a filesystem that takes idmapped mounts (ext4, xfs, btrfs; tmpfs from Linux 6.3)');
  }
  const directory = `directory rootfs on the filesystem of ${idmap.path}: yes (behind a directory closed to other host users)`;
  if (!idmap.overlay?.supported) {
    return warn(name, `${directory}; overlay rootfs (containerd, CRI-O, podman storage): no (${idmap.overlay?.reason ?? 'not probed'}), shifted with chown`, 'use Linux >= 5.19 for overlays over idmapped lower layers');
  }
  return pass(name, `${directory}; overlay rootfs (containerd, CRI-O, podman storage): yes through the shim (rebuilt over idmapped lower layers, no copy-up), shifted with chown through hooks.d alone`);
}

/** Every check, in the order a person fixes a host: kernel, ids, runtimes, installation. */
export function runChecks(facts: HostFacts): Check[] {
  const uid = lookupUid(facts.passwd, facts.pool.user);
  return [
    ...checkCgroup(facts.mountinfo, facts.cgroup2Controllers),
    checkDelegate(facts.delegate),
    checkUserNamespaces(facts.maxUserNamespaces, facts.unprivilegedUsernsClone),
    checkSubids('subuid', facts.pool.subuidFile, facts.subuid, facts.pool.user, uid, facts.pool.blockSize),
    checkSubids('subgid', facts.pool.subgidFile, facts.subgid, facts.pool.user, uid, facts.pool.blockSize),
    ...checkRuntimes(facts.runtimes),
    checkHooks(facts.hooks),
    checkStateDir(facts.stateDir),
    checkLog(facts.logFile, facts.logDir),
    checkConfig(facts.config),
    checkIdmap(facts.idmap),
  ];
}

/** The cgroup2 mount whose controllers the probe should read. */
export function cgroup2MountPoint(mountinfo: string): string | undefined {
  return cgroup2Mount(mountinfo)?.mountPoint;
}

export function formatChecks(checks: Check[]): string {
  const lines: string[] = [];
  for (const check of checks) {
    lines.push(`${check.status.padEnd(4)}  ${check.name}: ${check.detail}`);
    if (check.fix) lines.push(`      fix: ${check.fix}`);
  }
  const count = (status: CheckStatus) => checks.filter((c) => c.status === status).length;
  lines.push(`${count('pass')} passed, ${count('warn')} warnings, ${count('fail')} failed`);
  return lines.join('\n');
}
