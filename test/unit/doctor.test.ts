import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS } from '../../lib/config/config';
import {
  checkCgroup,
  checkConfig,
  checkDelegate,
  checkHooks,
  checkIdmap,
  checkLog,
  checkRuntimes,
  checkStateDir,
  checkSubids,
  checkUserNamespaces,
  formatChecks,
  lookupUid,
  runChecks,
} from '../../lib/doctor/doctor';
import { HOOK_FILE_NAMES, type HooksFacts, type PathFacts } from '../../lib/doctor/facts';
import { findHooksDir, probeHost } from '../../lib/doctor/probe';

// /proc/self/mountinfo lines as this development machine shows them (hybrid),
// a pure cgroup v2 host, and the private mount namespace of the hybrid trick.
const HYBRID = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
const UNIFIED = `25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
27 25 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;
const V1_ONLY = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
`;
const TRICK = `25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
900 25 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 none rw
`;

const cgroup = suite('doctor: cgroup layout');
cgroup('a pure cgroup v2 host passes, and its controllers are listed', () => {
  const checks = checkCgroup(UNIFIED, 'cpuset cpu io memory hugetlb pids rdma misc\n');
  assert.equal(checks.map((c) => c.status), ['pass', 'pass']);
  assert.match(checks[0]!.detail, /cgroup2 is mounted at \/sys\/fs\/cgroup/);
  assert.match(checks[1]!.detail, /cpuset cpu io memory hugetlb pids rdma misc/);
});
cgroup('the hybrid layout of this machine fails and says where cgroup2 is and what v1 holds', () => {
  const checks = checkCgroup(HYBRID, 'hugetlb\n');
  assert.is(checks[0]!.status, 'fail');
  assert.match(checks[0]!.detail, /hybrid layout: cgroup2 is mounted at \/sys\/fs\/cgroup\/unified/);
  assert.match(checks[0]!.detail, /v1 hierarchies \(cpu, memory, pids, name=systemd\)/);
  assert.match(checks[0]!.fix!, /private mount namespace/);
  assert.is(checks[1]!.status, 'warn');
  assert.match(checks[1]!.detail, /at \/sys\/fs\/cgroup\/unified: hugetlb; missing cpu, memory, pids \(cpu, memory, pids bound to v1 hierarchies\)/);
});
cgroup('inside the private mount namespace trick the hierarchy is v2', () => {
  assert.equal(checkCgroup(TRICK, undefined).map((c) => [c.status, c.detail]), [['pass', 'unified: cgroup2 is mounted at /sys/fs/cgroup']]);
});
cgroup('mounts hidden by a later mount at the same point or above do not count', () => {
  const overmounted = `${HYBRID}900 25 0:38 / /sys/fs/cgroup rw - cgroup2 none rw\n`;
  assert.equal(checkCgroup(overmounted, undefined).map((c) => c.status), ['pass']);
  const bothVisible = `${UNIFIED}60 27 0:50 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n`;
  assert.equal(checkCgroup(bothVisible, undefined).map((c) => c.status), ['warn']);
});
cgroup('cgroup v1 only fails', () => {
  const [check] = checkCgroup(V1_ONLY, undefined);
  assert.is(check!.status, 'fail');
  assert.match(check!.detail, /no cgroup2 hierarchy is mounted \(cgroup v1 only: \/sys\/fs\/cgroup\/memory\)/);
});
cgroup('/sys/kernel/cgroup/delegate', () => {
  const present = checkDelegate('cgroup.procs\ncgroup.threads\ncgroup.subtree_control\nmemory.oom.group\n');
  assert.is(present.status, 'pass');
  assert.match(present.detail, /cgroup\.procs cgroup\.threads cgroup\.subtree_control memory\.oom\.group$/);
  assert.is(checkDelegate(undefined).status, 'warn');
  assert.is(checkDelegate('\n').status, 'fail');
});
cgroup.run();

const userns = suite('doctor: user namespaces');
userns('enabled, disabled, scarce, absent', () => {
  assert.equal(checkUserNamespaces('96365\n', undefined), { name: 'user namespaces', status: 'pass', detail: 'user.max_user_namespaces = 96365' });
  assert.is(checkUserNamespaces('0\n', undefined).status, 'fail');
  assert.is(checkUserNamespaces('10\n', undefined).status, 'warn');
  assert.is(checkUserNamespaces(undefined, undefined).status, 'fail');
  assert.is(checkUserNamespaces('x', undefined).status, 'fail');
});
userns('kernel.unprivileged_userns_clone = 0 is reported but does not matter to root', () => {
  const check = checkUserNamespaces('1000', '0\n');
  assert.is(check.status, 'pass');
  assert.match(check.detail, /unprivileged_userns_clone = 0/);
});
userns.run();

const subid = suite('doctor: subuid/subgid pool');
const PASSWD = 'root:x:0:0:root:/root:/bin/bash\ncontainers:x:999:999::/nonexistent:/usr/sbin/nologin\n';
subid('entries by name or by uid are found and counted in blocks', () => {
  const byName = checkSubids('subuid', '/etc/subuid', 'alice:100000:65536\ncontainers:2147483647:2147483648\n', 'containers', 999, 65536);
  assert.is(byName.status, 'pass');
  assert.match(byName.detail, /1 range for 'containers', 2147483648 ids \(2147483647\+2147483648\), room for 32767 containers of 65536/);
  const byUid = checkSubids('subgid', '/etc/subgid', '999:327680:131072\n999:655360:65536\n', 'containers', lookupUid(PASSWD, 'containers'), 65536);
  assert.is(byUid.status, 'pass');
  assert.match(byUid.detail, /2 ranges .* room for 3 containers/);
});
subid("room is counted by the allocator's rule: whole blocks on a block boundary", () => {
  // 300000 is not on a block boundary: blocks start at 327680, and only one ends by 431072 (as 2147483647+2147483648 holds 32767, not 32768).
  const unaligned = checkSubids('subuid', '/etc/subuid', 'containers:300000:131072\n', 'containers', undefined, 65536);
  assert.match(unaligned.detail, /131072 ids \(300000\+131072\), room for 1 container of 65536/);
});
subid('no entry, a missing file, or a range smaller than a block fail with the line to add', () => {
  const none = checkSubids('subuid', '/etc/subuid', 'alice:100000:65536\n', 'containers', 999, 65536);
  assert.is(none.status, 'fail');
  assert.match(none.fix!, /echo 'containers:2147483647:2147483648' >> \/etc\/subuid/);
  assert.is(checkSubids('subuid', '/etc/subuid', undefined, 'containers', undefined, 65536).status, 'fail');
  const small = checkSubids('subuid', '/etc/subuid', 'containers:100000:1000\n', 'containers', undefined, 65536);
  assert.is(small.status, 'fail');
  assert.match(small.detail, /room for 0 containers/);
});
subid('reads the files as the allocator does: a malformed line fails, ids another owner holds do not count', () => {
  const bad = checkSubids('subuid', '/etc/subuid', 'containers:100000:65536\ncontainers:x:65536\n', 'containers', undefined, 65536);
  assert.is(bad.status, 'fail');
  assert.match(bad.detail, /\/etc\/subuid line 2/);
  const shared = checkSubids('subuid', '/etc/subuid', 'containers:131072:131072\nalice:131072:65536\n', 'containers', undefined, 65536);
  assert.is(shared.status, 'pass');
  assert.match(shared.detail, /65536 ids \(196608\+65536\), room for 1 container of 65536/);
});
subid('uid lookup', () => {
  assert.is(lookupUid(PASSWD, 'containers'), 999);
  assert.is(lookupUid(PASSWD, '1234'), 1234);
  assert.is(lookupUid(PASSWD, 'nobody-here'), undefined);
  assert.is(lookupUid(undefined, 'containers'), undefined);
});
subid.run();

const runtimes = suite('doctor: runtimes');
runtimes('crun delegates by itself; runc 1.1 only with the systemd driver; older runc never', () => {
  const checks = checkRuntimes([
    { name: 'runc', version: 'runc version 1.1.5+ds1' },
    { name: 'crun', version: 'crun version 1.8.1' },
  ]);
  assert.equal(checks.map((c) => [c.name, c.status]), [['runc', 'warn'], ['crun', 'pass']]);
  assert.match(checks[0]!.detail, /^runc 1\.1\.5: hands the cgroup to container root only with the systemd cgroup driver/);
  assert.match(checks[1]!.detail, /^crun 1\.8\.1: hands the container cgroup to container root by itself/);
  assert.match(checkRuntimes([{ name: 'runc', version: 'runc version 1.0.2' }])[0]!.detail, /never hands the cgroup/);
});
runtimes('runc before 1.3 warns that it cannot exec into a user namespace on the engine\'s network namespace, nor start a pod\'s app container; runc 1.3 passes', () => {
  const [old] = checkRuntimes([{ name: 'runc', version: 'runc version 1.1.5+ds1' }]);
  assert.is(old!.status, 'warn');
  assert.match(old!.detail, /runc 1\.1\.5 joins a user namespace before the network namespace, so it cannot exec into .* nor start an app container in a pod/);
  assert.match(old!.fix!, /crun/);
  const [fixed] = checkRuntimes([{ name: 'runc', version: 'runc version 1.3.0' }]);
  assert.is(fixed!.status, 'pass');
});
runtimes('neither runtime found fails', () => {
  const checks = checkRuntimes([{ name: 'runc' }, { name: 'crun' }]);
  assert.equal(checks.map((c) => c.status), ['fail']);
});
runtimes.run();

const hookDef = (path: string, stage: string) => JSON.stringify({ version: '1.0.0', hook: { path, args: ['oci-userns', 'hook', stage] }, when: { commands: ['(^|/)init$'] }, stages: [stage] });
const hooksFacts = (over: Partial<HooksFacts> = {}): HooksFacts => ({
  dir: '/usr/share/containers/oci/hooks.d',
  files: HOOK_FILE_NAMES.map((name) => ({ name, text: hookDef('/usr/local/bin/oci-userns', name.includes('poststop') ? 'poststop' : 'createRuntime') })),
  programs: { '/usr/local/bin/oci-userns': { path: '/usr/local/bin/oci-userns', executable: true, interpreter: '/usr/bin/node', interpreterExecutable: true } },
  ...over,
});

const hooks = suite('doctor: hooks.d files');
hooks('all four valid, pointing at an executable program with an absolute node', () => {
  const check = checkHooks(hooksFacts());
  assert.is(check.status, 'pass', check.detail);
  assert.match(check.detail, /read by podman and CRI-O by default/);
});
hooks('none installed, one missing, one invalid, one not matching the schema', () => {
  assert.match(checkHooks(hooksFacts({ files: HOOK_FILE_NAMES.map((name) => ({ name })) })).detail, /holds none of the oci-userns definitions/);
  const [first, second, third, fourth] = hooksFacts().files;
  const broken = checkHooks(hooksFacts({ files: [{ name: first!.name }, { ...second!, text: '{' }, { ...third!, text: '{"version":"1.0.0"}' }, fourth!] }));
  assert.is(broken.status, 'fail');
  assert.match(broken.detail, /oci-userns-annotation-createruntime\.json is missing/);
  assert.match(broken.detail, /oci-userns-annotation-poststop\.json is not valid JSON/);
  assert.match(broken.detail, /oci-userns-systemd-createruntime\.json: missing required key 'hook'/);
  assert.match(broken.fix!, /install\.sh --hooks-dir \/usr\/share\/containers\/oci\/hooks\.d/);
});
hooks('the program: missing, #!/usr/bin/env node (warn: no PATH for hooks), a missing node (fail)', () => {
  const program = (facts: object) => checkHooks(hooksFacts({ programs: { '/usr/local/bin/oci-userns': { path: '/usr/local/bin/oci-userns', ...facts } as never } }));
  assert.is(program({ executable: false }).status, 'fail');
  const env = program({ executable: true, interpreter: '/usr/bin/env node', interpreterExecutable: true });
  assert.is(env.status, 'warn');
  assert.match(env.detail, /#!\/usr\/bin\/env node; runtimes give hooks only their definition's env/);
  assert.is(program({ executable: true, interpreter: '/opt/node/bin/node', interpreterExecutable: false }).status, 'fail');
});
hooks('a folder engines do not read by default is named as such', () => {
  assert.match(checkHooks(hooksFacts({ dir: '/opt/hooks' })).detail, /read only when named: podman --hooks-dir/);
  assert.match(checkHooks(hooksFacts({ dir: '/etc/containers/oci/hooks.d' })).detail, /read only when named/, 'podman 4.3 reads only /usr/share/... unless configured');
});
hooks.run();

const dirs = suite('doctor: state directory, log, config file');
const dir = (over: Partial<PathFacts>): PathFacts => ({ path: '/var/lib/oci-userns', exists: true, isSymlink: false, isDirectory: true, uid: 0, mode: 0o40700, writable: true, ...over });
dirs('state directory: root-owned and not writable by others passes; otherwise named', () => {
  assert.is(checkStateDir(dir({})).status, 'pass');
  assert.is(checkStateDir(dir({ exists: false })).status, 'warn');
  assert.is(checkStateDir(dir({ isSymlink: true })).status, 'fail');
  assert.is(checkStateDir(dir({ isDirectory: false })).status, 'fail');
  assert.is(checkStateDir(dir({ uid: 1000 })).status, 'fail');
  const open = checkStateDir(dir({ mode: 0o40777 }));
  assert.is(open.status, 'fail');
  assert.match(open.detail, /mode 0777/);
});
dirs('log: writable file, a folder the first line creates, or not writable', () => {
  const file = dir({ path: '/var/log/oci-userns/oci-userns.log', isDirectory: false, mode: 0o100644 });
  const logDir = dir({ path: '/var/log/oci-userns' });
  assert.is(checkLog(file, logDir).status, 'pass');
  assert.is(checkLog({ ...file, writable: false }, logDir).status, 'fail');
  assert.is(checkLog({ path: file.path, exists: false }, { path: logDir.path, exists: false }).status, 'warn');
  assert.is(checkLog({ path: file.path, exists: false }, { ...logDir, writable: false }).status, 'fail');
});
dirs('config file: valid, absent (defaults), invalid', () => {
  assert.is(checkConfig({ path: '/etc/containers/oci-userns.json', explicit: false, exists: true }).status, 'pass');
  assert.match(checkConfig({ path: '/etc/containers/oci-userns.json', explicit: false, exists: false }).detail, /built-in defaults/);
  const bad = checkConfig({ path: '/x.json', explicit: true, exists: true, problem: "config file /x.json: unknown key 'bogus'" });
  assert.is(bad.status, 'fail');
  assert.match(bad.fix!, /validate --kind config-file \/x\.json/);
});
dirs('formatted output: a line per check, the fix under it, a summary', () => {
  const text = formatChecks([checkConfig({ path: '/c', explicit: false, exists: true }), checkDelegate(undefined)]);
  assert.equal(text.split('\n'), [
    'pass  config file: /c: valid',
    'warn  cgroup delegation files: /sys/kernel/cgroup/delegate does not exist (kernel older than 4.15)',
    '      fix: use a kernel >= 4.15, which lists the files a delegated cgroup must hand over',
    '1 passed, 1 warnings, 0 failed',
  ]);
});
dirs.run();

const probe = suite('doctor: probing a fake host tree');
let root = '';
probe.before.each(() => {
  root = mkdtempSync(join(tmpdir(), 'oci-userns-doctor-'));
});
probe.after.each(() => rmSync(root, { recursive: true, force: true }));
const put = (path: string, text: string, mode = 0o644) => {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), text);
  chmodSync(join(root, path), mode);
};

probe('reads every fact below the root and the checks come out as for a ready v2 host', async () => {
  put('/proc/self/mountinfo', UNIFIED);
  put('/sys/fs/cgroup/cgroup.controllers', 'cpu memory pids\n');
  put('/sys/kernel/cgroup/delegate', 'cgroup.procs\ncgroup.threads\ncgroup.subtree_control\n');
  put('/proc/sys/user/max_user_namespaces', '63000\n');
  put('/etc/subuid', 'containers:2147483647:2147483648\n');
  put('/etc/subgid', 'containers:2147483647:2147483648\n');
  put('/etc/passwd', PASSWD);
  put('/usr/bin/node', '', 0o755);
  put('/usr/local/bin/oci-userns', '#!/usr/bin/node\n', 0o755);
  for (const name of HOOK_FILE_NAMES) put(`/etc/containers/oci/hooks.d/${name}`, hookDef('/usr/local/bin/oci-userns', name.includes('poststop') ? 'poststop' : 'createRuntime'));
  mkdirSync(join(root, '/var/lib/oci-userns'), { recursive: true, mode: 0o700 });
  mkdirSync(join(root, '/var/log/oci-userns'), { recursive: true });
  const hooksDir = await findHooksDir(root, ['/usr/share/containers/oci/hooks.d', '/etc/containers/oci/hooks.d']);
  assert.is(hooksDir, '/etc/containers/oci/hooks.d');
  const facts = await probeHost({
    root,
    config: DEFAULTS,
    configFacts: { path: '/etc/containers/oci-userns.json', explicit: false, exists: false },
    hooksDir,
    runtimeVersion: async (name) => (name === 'crun' ? 'crun version 1.8.1' : undefined),
    idmapProbe: async (path) => ({ path, helper: '/usr/local/libexec/oci-userns/oci-userns-idmap', supported: true, overlay: { supported: true } }),
  });
  assert.is(facts.idmap.path, join(root, '/var/lib'), 'the filesystem next to the state dir is probed');
  assert.is(facts.cgroup2Controllers, 'cpu memory pids\n');
  assert.equal(facts.hooks.programs['/usr/local/bin/oci-userns'], { path: '/usr/local/bin/oci-userns', executable: true, interpreter: '/usr/bin/node', interpreterExecutable: true });
  const checks = runChecks(facts);
  // Run as root in tests, the temp state dir is root-owned; as another user it is not.
  const expectOwner = process.getuid?.() === 0 ? 'pass' : 'fail';
  assert.equal(
    checks.map((c) => [c.name, c.status]),
    [
      ['cgroup v2', 'pass'],
      ['cgroup v2 controllers', 'pass'],
      ['cgroup delegation files', 'pass'],
      ['user namespaces', 'pass'],
      ['subuid pool', 'pass'],
      ['subgid pool', 'pass'],
      ['crun', 'pass'],
      ['hooks.d files', 'pass'],
      ['state directory', expectOwner],
      ['log', 'pass'],
      ['config file', 'pass'],
      ['ID-mapped rootfs', 'pass'],
    ],
  );
});
probe('a symlinked state dir and a missing hooks folder are what a probe sees', async () => {
  mkdirSync(join(root, '/elsewhere'), { recursive: true });
  mkdirSync(join(root, '/var/lib'), { recursive: true });
  symlinkSync(join(root, '/elsewhere'), join(root, '/var/lib/oci-userns'));
  const facts = await probeHost({
    root,
    config: DEFAULTS,
    configFacts: { path: '/etc/containers/oci-userns.json', explicit: false, exists: false },
    hooksDir: '/usr/share/containers/oci/hooks.d',
    runtimeVersion: async () => undefined,
    idmapProbe: async (path) => ({ path, supported: false }),
  });
  assert.is(facts.mountinfo, '');
  assert.is(facts.stateDir.isSymlink, true);
  assert.equal(facts.hooks.files.map((f) => f.text), [undefined, undefined, undefined, undefined]);
  assert.is(facts.subuid, undefined);
  const statuses = Object.fromEntries(runChecks(facts).map((c) => [c.name, c.status]));
  assert.is(statuses['cgroup v2'], 'fail');
  assert.is(statuses['state directory'], 'fail');
  assert.is(statuses['hooks.d files'], 'fail');
  assert.is(statuses['OCI runtime'], 'fail');
});
probe.run();

const idmap = suite('doctor: ID-mapped rootfs');
idmap('per rootfs kind: directory and overlay rootfs idmapped where the probes pass; a missing helper or a refusal is a warning that says what is shifted with chown', () => {
  const helper = '/usr/local/libexec/oci-userns/oci-userns-idmap';
  const yes = checkIdmap({ path: '/var/lib', helper, supported: true, overlay: { supported: true } });
  assert.is(yes.status, 'pass');
  assert.is(
    yes.detail,
    'directory rootfs on the filesystem of /var/lib: yes (behind a directory closed to other host users); overlay rootfs (containerd, CRI-O, podman storage): yes through the shim (rebuilt over idmapped lower layers, no copy-up), shifted with chown through hooks.d alone',
  );
  const noOverlay = checkIdmap({ path: '/var/lib', helper, supported: true, overlay: { supported: false, reason: 'the kernel refused an overlay over an idmapped lower layer (Linux 5.19+): mount: wrong fs type' } });
  assert.is(noOverlay.status, 'warn');
  assert.match(noOverlay.detail, 'directory rootfs on the filesystem of /var/lib: yes');
  assert.match(noOverlay.detail, 'overlay rootfs (containerd, CRI-O, podman storage): no (the kernel refused an overlay');
  const refused = checkIdmap({ path: '/var/lib', helper, supported: false, reason: 'oci-userns-idmap: the kernel refused an idmapped mount (mount_setattr): /var/lib: Invalid argument' });
  assert.is(refused.status, 'warn');
  assert.match(refused.detail, 'no (oci-userns-idmap: the kernel refused');
  const missing = checkIdmap({ path: '/var/lib', supported: false });
  assert.is(missing.status, 'warn');
  assert.match(missing.fix!, 'install.sh');
});
idmap.run();

