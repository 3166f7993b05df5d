// The hook's plan (lib/hook/plan.ts) for the states and specs real runtimes
// wrote (test/fixtures: runc 1.1.5, crun 1.8.1, podman 4.3): pure, no root.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS, type Config } from '../../lib/config/config';
import { InputError, RefusedError } from '../../lib/errors';
import { planHook, type HookFacts, type HookStage, type PlanInput } from '../../lib/hook/plan';
import { parseValidated } from '../../lib/oci/json';
import type { Spec } from '../../lib/oci/spec';
import { parseState, type ContainerState } from '../../lib/oci/state';
import { rejects } from '../helpers/assert-error';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const text = (name: string) => readFileSync(join(fixtures, name), 'utf8');
const state = (name: string): ContainerState => parseState(text(`state-${name}.json`));
const spec = (name: string): Spec => parseValidated<Spec>(text(`config-${name}.json`), 'config', name);

const podmanSystemd = spec('podman4.3-userns-auto-systemd');
const podmanMap = podmanSystemd.linux!.uidMappings!;
const userns = spec('runc-spec-userns');
const usernsMap = userns.linux!.uidMappings!;
const config = (over: { shift?: Partial<Config['shift']>; cgroup?: Partial<Config['cgroup']> } = {}): PlanInput['config'] => ({
  shift: { ...DEFAULTS.shift, ...over.shift },
  cgroup: { ...DEFAULTS.cgroup, ...over.cgroup },
  overlap: DEFAULTS.overlap,
});
/** Facts as read.ts gathers them; rootfs null: config.json names none. */
const facts = (uidMappings = usernsMap, rootfs: HookFacts['rootfs'] | null = { path: '/srv/bundles/example/rootfs', shifted: false }): HookFacts => ({
  mappings: { uidMappings, gidMappings: uidMappings },
  ...(rootfs ? { rootfs } : {}),
});
const plan = (stage: HookStage, s: ContainerState, sp: Spec, f?: HookFacts, c = config()) => planHook({ stage, state: s, spec: sp, config: c, facts: f });
const withArgs = (sp: Spec, args: string[]): Spec => ({ ...sp, process: { ...sp.process!, args } });

const nothing = suite('plan: containers the hook leaves alone');
nothing('runc, crun and podman specs without a user namespace, at every stage', () => {
  for (const [st, sp] of [
    ['runc1.1.5-createRuntime', 'runc1.1.5-spec'],
    ['runc1.1.5-prestart', 'runc1.1.5-spec'],
    ['runc1.1.5-poststop', 'runc1.1.5-spec'],
    ['crun1.8.1-createRuntime', 'crun1.8.1-spec'],
    ['crun1.8.1-poststop', 'crun1.8.1-spec'],
    ['podman4.3-runc-createRuntime', 'podman4.3-plain'],
    ['podman4.3-runc-createRuntime', 'podman4.3-systemd'],
    ['podman4.3-runc-poststop', 'podman4.3-systemd'],
  ] as const) {
    const stage: HookStage = st.endsWith('poststop') ? 'poststop' : st.endsWith('prestart') ? 'prestart' : 'createRuntime';
    assert.equal(plan(stage, state(st), spec(sp)), { kind: 'nothing', containerId: state(st).id, reason: 'no user namespace' }, `${st} ${sp}`);
  }
});
nothing('io.oci-userns.enable=false in config.json or in the state opts a container out', () => {
  const optedOut = { ...podmanSystemd, annotations: { ...podmanSystemd.annotations, 'io.oci-userns.enable': 'false' } };
  assert.equal(plan('createRuntime', state('podman4.3-runc-createRuntime'), optedOut, facts(podmanMap)).kind, 'nothing');
  const fromState = { ...state('crun1.8.1-createRuntime'), annotations: { 'io.oci-userns.enable': 'false' } };
  assert.equal(plan('createRuntime', fromState, userns), { kind: 'nothing', containerId: 'fx-crun', reason: 'io.oci-userns.enable=false' });
});

const release = suite('plan: poststop');
release('a user-namespaced container releases its range, with or without a pid in the state (runc omits it, crun writes 0)', () => {
  assert.equal(plan('poststop', state('podman4.3-runc-poststop'), podmanSystemd), { kind: 'release', containerId: state('podman4.3-runc-poststop').id });
  assert.equal(plan('poststop', state('runc1.1.5-poststop'), userns), { kind: 'release', containerId: 'fx-runc' });
  assert.equal(plan('poststop', state('crun1.8.1-poststop'), userns), { kind: 'release', containerId: 'fx-crun' });
});

const setup = suite('plan: createRuntime and prestart');
setup('podman --userns=auto systemd container: guard its range, shift the rootfs, delegate the cgroup to its root', () => {
  const s = state('podman4.3-runc-createRuntime');
  const p = plan('createRuntime', s, podmanSystemd, facts(podmanMap, { path: '/merged', shifted: false }), config({ shift: { method: 'chown' } }));
  assert.equal(p, {
    kind: 'setup',
    containerId: s.id,
    pid: 14191,
    range: { kind: 'guard', source: 'external', uidMappings: podmanMap, gidMappings: podmanMap, overlap: 'refuse', rootfs: '/merged', rootfsIdmapped: false },
    rootfs: { kind: 'shift', path: '/merged', mode: 'auto', unmapped: 'error' },
    cgroup: { kind: 'delegate', pid: 14191, uid: 1000000, gid: 1000000 },
    warnings: [],
  });
});
setup('runc and crun at createRuntime and prestart: the pid of the state, the mappings of the facts', () => {
  for (const [st, stage, pid] of [
    ['runc1.1.5-createRuntime', 'createRuntime', 14565],
    ['runc1.1.5-prestart', 'prestart', 14565],
    ['crun1.8.1-createRuntime', 'createRuntime', 14624],
    ['crun1.8.1-prestart', 'prestart', 14624],
  ] as const) {
    const p = plan(stage, state(st), userns, facts());
    assert.is(p.kind, 'setup', st);
    if (p.kind !== 'setup') continue;
    assert.is(p.pid, pid);
    assert.equal(p.range.uidMappings, usernsMap);
  }
});
setup('the rootfs step with shift.method chown: none, skip when already shifted (auto), shift (auto), verify (always-verify)', () => {
  const s = state('runc1.1.5-createRuntime');
  const rootfs = (f: HookFacts, c = config()) => {
    const p = plan('createRuntime', s, userns, f, { ...c, shift: { ...c.shift, method: 'chown' } });
    return p.kind === 'setup' ? p.rootfs : undefined;
  };
  const shifted = facts(usernsMap, { path: '/r', shifted: true });
  assert.equal(rootfs(facts(usernsMap, null)), { kind: 'none', reason: 'config.json names no rootfs' });
  assert.equal(rootfs(shifted, config({ shift: { mode: 'never' } })), { kind: 'none', reason: 'shift.mode is never' });
  assert.equal(rootfs(shifted), { kind: 'skip', path: '/r', reason: 'already shifted' });
  assert.equal(rootfs(facts(usernsMap, { path: '/r', shifted: false }), config({ shift: { unmapped: 'overflow' } })), { kind: 'shift', path: '/r', mode: 'auto', unmapped: 'overflow' });
  assert.equal(rootfs(shifted, config({ shift: { mode: 'always-verify' } })), { kind: 'shift', path: '/r', mode: 'always-verify', unmapped: 'error' });
});
setup('the rootfs step with shift.method auto (the default) and idmap: an idmapped mount, chown as the fallback of auto only; a shifted tree is never idmapped', () => {
  const s = state('runc1.1.5-createRuntime');
  const rootfs = (f: HookFacts, c = config()) => {
    const p = plan('createRuntime', s, userns, f, c);
    return p.kind === 'setup' ? p.rootfs : undefined;
  };
  const fresh = facts(usernsMap, { path: '/r', shifted: false, closedBy: '/' });
  const shifted = facts(usernsMap, { path: '/r', shifted: true, closedBy: '/' });
  assert.is(DEFAULTS.shift.method, 'auto');
  assert.equal(rootfs(fresh), { kind: 'idmap', path: '/r', pid: 14565, fallback: { kind: 'shift', path: '/r', mode: 'auto', unmapped: 'error' } });
  assert.equal(rootfs(fresh, config({ shift: { method: 'idmap' } })), { kind: 'idmap', path: '/r', pid: 14565 });
  for (const method of ['auto', 'idmap'] as const) {
    assert.equal(rootfs(shifted, config({ shift: { method } })), { kind: 'skip', path: '/r', reason: 'already shifted' }, method);
    assert.equal(rootfs(shifted, config({ shift: { method, mode: 'always-verify' } })), { kind: 'shift', path: '/r', mode: 'always-verify', unmapped: 'error' }, method);
    assert.equal(rootfs(fresh, config({ shift: { method, mode: 'never' } })), { kind: 'none', reason: 'shift.mode is never' }, method);
  }
});
setup('the safety rule: a rootfs every host user can reach is shifted with chown under auto (saying why) and refused under idmap', async () => {
  const s = state('runc1.1.5-createRuntime');
  const open = facts(usernsMap, { path: '/srv/b/rootfs', shifted: false });
  const auto = plan('createRuntime', s, userns, open);
  const why = 'every host user can reach the rootfs /srv/b/rootfs (no directory above it is closed to users outside the container\'s range), so an idmapped rootfs would let them run setuid files made inside as host root';
  assert.equal(auto.kind === 'setup' && auto.rootfs, { kind: 'shift', path: '/srv/b/rootfs', mode: 'auto', unmapped: 'error', idmapRefused: why });
  const host = usernsMap[0]!.hostID;
  const error = await rejects(() => plan('createRuntime', s, userns, open, config({ shift: { method: 'idmap' } })), RefusedError, `${why}; close its parent to others (chown ${host}:${host} /srv/b && chmod 0700 /srv/b), or set shift.method to auto or chown`);
  assert.is(error.containerId, 'fx-runc');
});
setup('a tree shifted away from its original owners (another range, a recorded shift) is never idmapped: chown under auto, refused under idmap', async () => {
  const s = state('runc1.1.5-createRuntime');
  const away = facts(usernsMap, { path: '/r', shifted: false, shiftedAway: 'its root directory is owned by 300000:300000, not by host root', closedBy: '/' });
  const auto = plan('createRuntime', s, userns, away);
  const why = 'the rootfs /r is not at its original owners (its root directory is owned by 300000:300000, not by host root), and an idmapped mount maps on-disk ids';
  assert.equal(auto.kind === 'setup' && auto.rootfs, { kind: 'shift', path: '/r', mode: 'auto', unmapped: 'error', idmapRefused: why });
  await rejects(() => plan('createRuntime', s, userns, away, config({ shift: { method: 'idmap' } })), RefusedError, `${why}; give it back its original owners first (oci-userns unshift /r)`);
});
setup('the guard says how the container uses the raw tree: idmapped, owning it (a shift), or unset when the step changes nothing', () => {
  const s = state('runc1.1.5-createRuntime');
  const guard = (f: HookFacts, c = config()) => {
    const p = plan('createRuntime', s, userns, f, c);
    return p.kind === 'setup' ? p.range.rootfsIdmapped : 'no setup';
  };
  assert.is(guard(facts(usernsMap, { path: '/r', shifted: false, closedBy: '/' })), true);
  assert.is(guard(facts(usernsMap, { path: '/r', shifted: false })), false, 'the safety rule sends it to chown');
  assert.is(guard(facts(usernsMap, { path: '/r', shifted: false, closedBy: '/' }), config({ shift: { method: 'chown' } })), false);
  assert.is(guard(facts(usernsMap, { path: '/r', shifted: true, closedBy: '/' })), false, 'a tree shifted already is owned');
  assert.is(guard(facts(usernsMap, { path: '/r', shifted: true, idmappedMount: true, closedBy: '/' })), true, 'the shim\'s private mount');
  assert.is(guard(facts(usernsMap, null)), undefined);
});
setup('a rootfs that is an idmapped mount already (the shim\'s, an engine\'s) is never walked, not even under always-verify', () => {
  const s = state('runc1.1.5-createRuntime');
  const mounted = facts(usernsMap, { path: '/state/rootfs/c/root', shifted: true, idmappedMount: true, closedBy: '/state/rootfs/c' });
  for (const mode of ['auto', 'always-verify'] as const) {
    const p = plan('createRuntime', s, userns, mounted, config({ shift: { mode } }));
    assert.equal(p.kind === 'setup' && p.rootfs, { kind: 'skip', path: '/state/rootfs/c/root', reason: 'an idmapped mount' }, mode);
  }
});
setup('a spec that rules out delegation: the cgroup step is skipped with the reasons; a systemd container gets a warning', () => {
  const s = state('crun1.8.1-createRuntime');
  const plain = plan('createRuntime', s, userns, facts());
  assert.equal(plain.kind === 'setup' && plain.cgroup, { kind: 'skip', problems: ['/sys/fs/cgroup is mounted read-only'] });
  assert.equal(plain.kind === 'setup' && plain.warnings, []);
  const systemd = plan('createRuntime', s, withArgs(userns, ['/sbin/init']), facts());
  assert.equal(systemd.kind === 'setup' && systemd.warnings, ['cgroup not delegated: /sys/fs/cgroup is mounted read-only; systemd will fail to create its cgroups']);
});
setup('cgroup.strict refuses that systemd container', async () => {
  const error = await rejects(
    () => plan('createRuntime', state('crun1.8.1-createRuntime'), withArgs(userns, ['/sbin/init']), facts(), config({ cgroup: { strict: true } })),
    RefusedError,
    /^cgroup not delegated: \/sys\/fs\/cgroup is mounted read-only; systemd cannot run without a delegated cgroup/,
  );
  assert.is(error.containerId, 'fx-crun');
});
setup('the shim\'s source and name annotations reach the guard', () => {
  const annotated = { ...userns, annotations: { 'io.oci-userns.source': 'shim', 'io.oci-userns.name': 'web' } };
  const p = plan('createRuntime', state('runc1.1.5-createRuntime'), annotated, facts());
  assert.equal(p.kind === 'setup' && [p.range.source, p.range.name], ['shim', 'web']);
});
setup('refusals: no pid at a setup stage, process.user outside the mappings', async () => {
  await rejects(() => plan('createRuntime', state('runc1.1.5-poststop'), userns, facts()), InputError, 'state for createRuntime has no pid');
  const user = { ...userns, process: { ...userns.process!, user: { uid: 70000, gid: 0 } } };
  await rejects(() => plan('prestart', state('runc1.1.5-prestart'), user, facts()), InputError, 'process.user 70000:0 is not mapped');
});

nothing.run();
release("a CRI pod's container (containerd) forgets its rootfs's shift record: the engine removes the rootfs with it", () => {
  const pod = spec('containerd1.7.24-userns-pod-container');
  const poststop = { ...state('runc1.1.5-poststop'), bundle: '/run/containerd/k8s.io/c1' };
  assert.equal(plan('poststop', poststop, pod), { kind: 'release', containerId: 'fx-runc', forgetShift: '/run/containerd/k8s.io/c1/rootfs' });
  assert.equal(plan('poststop', poststop, pod, undefined, config({ shift: { mode: 'never' } })), { kind: 'release', containerId: 'fx-runc' }, 'no shift, no record');
});
release.run();
setup.run();
