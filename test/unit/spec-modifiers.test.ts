import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { systemdSpecProblems } from '../../lib/cgroup/spec-check';
import { shimVerdict } from '../../lib/oci/policy';
import { hasUserNamespace, specMappings, type Spec } from '../../lib/oci/spec';
import {
  addCgroupNamespace,
  addHooks,
  addUserNamespace,
  applyModifiers,
  bindSysWhenNetworkShared,
  dropNetSysctlsWhenNetworkJoined,
  keepShmBindFlags,
  makeCgroupMountWritable,
  mountRunLockTmpfs,
  mountRunTmpfs,
  setAnnotation,
  setIdMappings,
  systemdModifiers,
  userNamespaceModifiers,
  type SpecModifier,
} from '../../lib/shim/spec-modifiers';

const fixture = (name: string): Spec => JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', name), 'utf8'));
const SPECS = ['config-podman4.3-systemd.json', 'config-podman4.3-plain.json', 'config-runc1.1.5-spec.json', 'config-crun1.8.1-spec.json'];
const MAPS = { uidMappings: [{ containerID: 0, hostID: 2147549184, size: 65536 }], gidMappings: [{ containerID: 0, hostID: 2147549184, size: 65536 }] };
const HOOKS = { path: '/usr/local/bin/oci-userns', env: ['PATH=/usr/bin:/bin'], createRuntimeTimeout: 120 };

/** Runs a modifier on every captured spec and checks that it never changes its input. */
function onEverySpec(modify: SpecModifier, check: (after: Spec, before: Spec, name: string) => void) {
  for (const name of SPECS) {
    const before = fixture(name);
    const after = modify(before);
    assert.equal(before, fixture(name), `${name}: the input spec was changed`);
    check(after, before, name);
  }
}

const namespaces = suite('addUserNamespace, addCgroupNamespace');
namespaces('add a namespace of that type once, keep the others and their paths', () => {
  onEverySpec(addUserNamespace, (after, before, name) => {
    assert.ok(hasUserNamespace(after), name);
    assert.equal(after.linux!.namespaces!.slice(0, -1), before.linux!.namespaces, name);
    assert.equal(addUserNamespace(after), after, `${name}: added twice`);
  });
  onEverySpec(addCgroupNamespace, (after, _before, name) => {
    assert.is(after.linux!.namespaces!.filter((ns) => ns.type === 'cgroup').length, 1, name);
  });
  const podman = addUserNamespace(fixture('config-podman4.3-systemd.json'));
  assert.ok(podman.linux!.namespaces!.some((ns) => ns.type === 'network' && ns.path?.startsWith('/run/netns/')), 'the joined network namespace stays');
});
namespaces.run();

const mappings = suite('setIdMappings');
mappings('sets uid and gid mappings, copies of what it was given', () => {
  onEverySpec(setIdMappings(MAPS), (after, _before, name) => {
    assert.equal(specMappings(after), MAPS, name);
    assert.is.not(after.linux!.uidMappings, MAPS.uidMappings);
  });
});
mappings.run();

const cgroupMount = suite('makeCgroupMountWritable');
cgroupMount('runc/crun spec and plain podman: the read-only cgroup mount becomes rw, other options kept', () => {
  onEverySpec(makeCgroupMountWritable, (after, before, name) => {
    const mount = after.mounts!.find((m) => m.destination === '/sys/fs/cgroup')!;
    assert.not.ok(mount.options!.includes('ro'), name);
    assert.ok(mount.options!.includes('rw'), name);
    assert.is(after.mounts!.length, before.mounts!.length, name);
  });
  const runc = makeCgroupMountWritable(fixture('config-runc1.1.5-spec.json'));
  assert.equal(runc.mounts!.find((m) => m.destination === '/sys/fs/cgroup')!.options, ['nosuid', 'noexec', 'nodev', 'relatime', 'rw']);
});
cgroupMount('podman --systemd=always (already rw) is unchanged; a spec without the mount gets one', () => {
  const podman = fixture('config-podman4.3-systemd.json');
  assert.equal(makeCgroupMountWritable(podman), podman);
  const bare = fixture('config-runc1.1.5-spec.json');
  bare.mounts = bare.mounts!.filter((m) => m.destination !== '/sys/fs/cgroup');
  const mounted = makeCgroupMountWritable(bare).mounts!.filter((m) => m.destination === '/sys/fs/cgroup');
  assert.equal(mounted, [{ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'rw'] }]);
});
cgroupMount.run();

const sys = suite('bindSysWhenNetworkShared');
sys('podman joins its network namespace by path: sysfs becomes a read-only rbind of /sys', () => {
  const before = fixture('config-podman4.3-systemd.json');
  const after = bindSysWhenNetworkShared(before);
  assert.equal(after.mounts!.find((m) => m.destination === '/sys'), { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] });
  assert.equal(after.mounts!.filter((m) => m.destination !== '/sys'), before.mounts!.filter((m) => m.destination !== '/sys'));
});
sys('a new network namespace (runc and crun spec) keeps sysfs; the host network (none) does not', () => {
  for (const name of ['config-runc1.1.5-spec.json', 'config-crun1.8.1-spec.json']) assert.equal(bindSysWhenNetworkShared(fixture(name)), fixture(name), name);
  const hostNet = fixture('config-runc1.1.5-spec.json');
  hostNet.linux!.namespaces = hostNet.linux!.namespaces!.filter((ns) => ns.type !== 'network');
  assert.is(bindSysWhenNetworkShared(hostNet).mounts!.find((m) => m.destination === '/sys')!.type, 'bind');
});
sys.run();

const sysctl = suite('dropNetSysctlsWhenNetworkJoined');
sysctl('podman network namespace joined by path: net.* sysctls go, the others stay', () => {
  const before = fixture('config-podman4.3-systemd.json');
  assert.equal(before.linux!.sysctl, { 'net.ipv4.ping_group_range': '0 0' });
  assert.equal(dropNetSysctlsWhenNetworkJoined(before).linux!.sysctl, {});
  before.linux!.sysctl = { 'net.ipv4.ping_group_range': '0 0', 'kernel.msgmax': '8192' };
  assert.equal(dropNetSysctlsWhenNetworkJoined(before).linux!.sysctl, { 'kernel.msgmax': '8192' });
});
sysctl('a new network namespace keeps its net.* sysctls', () => {
  const spec = fixture('config-runc1.1.5-spec.json');
  spec.linux!.sysctl = { 'net.ipv4.ping_group_range': '0 0' };
  assert.equal(dropNetSysctlsWhenNetworkJoined(spec), spec);
});
sysctl.run();

const hooks = suite('addHooks');
hooks('appends createRuntime after the spec own hooks, with env and timeout; no poststop (the shim releases)', () => {
  onEverySpec(addHooks(HOOKS), (after, before, name) => {
    assert.equal(after.hooks!.createRuntime!.at(-1), { path: HOOKS.path, args: ['oci-userns', 'hook', 'createRuntime'], env: HOOKS.env, timeout: 120 }, name);
    assert.equal(after.hooks!.poststop, before.hooks?.poststop, name);
    assert.is(after.hooks!.prestart, undefined, name);
  });
  const withOthers = addHooks(HOOKS)(fixture('config-runc-spec-userns.json'));
  assert.is(withOthers.hooks!.createRuntime!.length, 2);
  assert.is(withOthers.hooks!.createRuntime![0]!.path, '/usr/libexec/oci/hooks.d/example-hook');
  assert.is(withOthers.hooks!.prestart!.length, 1);
});
hooks('a hook that names the program by another path (a symlink to it, as hooks.d files do) counts as the same', () => {
  const spec = { ...fixture('config-runc1.1.5-spec.json'), hooks: { createRuntime: [{ path: '/usr/bin/oci-userns-link', args: ['oci-userns', 'hook', 'createRuntime'] }] } };
  const after = addHooks({ ...HOOKS, aliases: ['/usr/bin/oci-userns-link'] })(spec);
  assert.equal(after.hooks!.createRuntime!.map((h) => h.path), ['/usr/bin/oci-userns-link']);
  assert.is(addHooks(HOOKS)(spec).hooks!.createRuntime!.length, 2, 'without the alias it is another program');
});
hooks('a stage that runs the same hook already (from hooks.d) does not get it twice', () => {
  const once = addHooks(HOOKS)(fixture('config-podman4.3-systemd.json'));
  assert.equal(addHooks({ ...HOOKS, env: ['PATH=/other'] })(once).hooks, once.hooks);
});
hooks('without timeouts, none is set', () => {
  const spec = addHooks({ path: '/p', env: [] })(fixture('config-runc1.1.5-spec.json'));
  assert.equal(spec.hooks!.createRuntime, [{ path: '/p', args: ['oci-userns', 'hook', 'createRuntime'], env: [] }]);
});
hooks.run();

const annotation = suite('setAnnotation');
annotation('adds to the existing annotations, or creates them', () => {
  onEverySpec(setAnnotation('io.oci-userns.source', 'shim'), (after, before, name) => {
    assert.equal(after.annotations, { ...before.annotations, 'io.oci-userns.source': 'shim' }, name);
  });
});
annotation.run();

const pipeline = suite('userNamespaceModifiers: the whole change');
pipeline('a systemd container comes out with a user namespace, the hook can delegate, the shim does not act again', () => {
  const before = fixture('config-podman4.3-systemd.json');
  const after = applyModifiers(before, userNamespaceModifiers({ ...MAPS, hooks: HOOKS, systemd: true }));
  assert.ok(hasUserNamespace(after));
  assert.equal(specMappings(after), MAPS);
  assert.equal(systemdSpecProblems(after), []);
  assert.is(after.annotations!['io.oci-userns.source'], 'shim');
  assert.is(shimVerdict(after, 'always').act, false);
  const rest = ({ linux, mounts, hooks, annotations, ...others }: Spec) => others;
  assert.equal(rest(after), rest(before), 'only linux, mounts, hooks and annotations change');
  const changed = { namespaces: undefined, uidMappings: undefined, gidMappings: undefined, sysctl: undefined };
  assert.equal({ ...after.linux, ...changed }, { ...before.linux, ...changed }, 'in linux, only namespaces, mappings and sysctl change');
  assert.equal(after.linux!.sysctl, {}, 'net.* sysctls of the joined network namespace are dropped');
  assert.is(after.mounts!.find((m) => m.destination === '/sys')!.type, 'bind');
});
pipeline('runc spec run as systemd: the cgroup mount becomes rw; as a plain container it stays ro', () => {
  const systemd = applyModifiers(fixture('config-runc1.1.5-spec.json'), userNamespaceModifiers({ ...MAPS, hooks: HOOKS, systemd: true }));
  assert.equal(systemdSpecProblems(systemd), []);
  const plain = applyModifiers(fixture('config-runc1.1.5-spec.json'), userNamespaceModifiers({ ...MAPS, hooks: HOOKS, systemd: false }));
  assert.equal(systemdSpecProblems(plain), ['/sys/fs/cgroup is mounted read-only']);
  assert.ok(hasUserNamespace(plain));
});
pipeline.run();

const CONTAINERD_CONTAINER = 'config-containerd1.7.24-userns-pod-container.json';
const CONTAINERD_SANDBOX = 'config-containerd1.7.24-userns-pod-sandbox.json';

const runTmpfs = suite('mountRunTmpfs, mountRunLockTmpfs');
runTmpfs("containerd's container spec (nothing on /run) gets tmpfs /run then /run/lock", () => {
  const before = fixture(CONTAINERD_CONTAINER);
  const after = mountRunLockTmpfs(mountRunTmpfs(before));
  assert.equal(before, fixture(CONTAINERD_CONTAINER), 'the input was changed');
  assert.equal(after.mounts!.slice(-2), [
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755'] },
    { destination: '/run/lock', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec'] },
  ]);
  assert.equal(after.mounts!.slice(0, -2), before.mounts);
});
runTmpfs('podman --systemd=always mounts them already: unchanged', () => {
  const podman = fixture('config-podman4.3-systemd.json');
  assert.is(mountRunLockTmpfs(mountRunTmpfs(podman)), podman);
});
runTmpfs.run();

const shm = suite('keepShmBindFlags');
shm("containerd's container /dev/shm bind (rbind, rprivate, rw) gains nosuid, nodev, noexec; other mounts unchanged", () => {
  const before = fixture(CONTAINERD_CONTAINER);
  const after = keepShmBindFlags(before);
  assert.equal(after.mounts!.find((m) => m.destination === '/dev/shm')!.options, ['rbind', 'rprivate', 'rw', 'nosuid', 'nodev', 'noexec']);
  assert.equal(after.mounts!.filter((m) => m.destination !== '/dev/shm'), before.mounts!.filter((m) => m.destination !== '/dev/shm'));
});
shm("the sandbox's bind has them already, and a tmpfs /dev/shm is not a bind: unchanged", () => {
  const sandbox = fixture(CONTAINERD_SANDBOX);
  assert.is(keepShmBindFlags(sandbox), sandbox);
  onEverySpec(keepShmBindFlags, (after, before, name) => assert.equal(after, before, name));
});
shm.run();

const systemdPipeline = suite('systemdModifiers: a systemd container in the user namespace containerd 1.7 gave the pod');
systemdPipeline("the real containerd spec comes out bootable: hooks, cgroup namespace, rw cgroup, /run tmpfs; the pod's namespaces and mappings kept", () => {
  const before = fixture(CONTAINERD_CONTAINER);
  assert.ok(systemdSpecProblems(before).length > 0, 'the captured spec cannot boot systemd as it is');
  const after = applyModifiers(before, systemdModifiers(HOOKS));
  assert.equal(systemdSpecProblems(after), []);
  assert.equal(after.linux!.namespaces, before.linux!.namespaces, 'the joined user, network, ipc, uts namespaces stay (cgroup was there)');
  assert.equal(specMappings(after), specMappings(before));
  assert.equal(after.hooks!.createRuntime!.map((h) => h.args), [['oci-userns', 'hook', 'createRuntime']]);
  assert.is(after.hooks!.poststop, before.hooks?.poststop, 'no poststop hook: the shim releases at delete');
  assert.ok(after.mounts!.find((m) => m.destination === '/sys/fs/cgroup')!.options!.includes('rw'));
  assert.ok(after.mounts!.some((m) => m.destination === '/run' && m.type === 'tmpfs'));
  assert.is(after.annotations!['io.oci-userns.systemd'], 'true');
  assert.is(after.annotations!['io.oci-userns.source'], undefined, 'the range is not the shim\'s');
  assert.equal(applyModifiers(after, systemdModifiers(HOOKS)), after, 'applying twice changes nothing');
});
systemdPipeline.run();
