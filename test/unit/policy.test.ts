import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { ShimPolicy } from '../../lib/config/config';
import { InputError } from '../../lib/errors';
import { isSystemdContainer, requestedRange, shimVerdict } from '../../lib/oci/policy';
import type { Spec } from '../../lib/oci/spec';
import { rejects } from '../helpers/assert-error';

const spec = (args: string[], annotations?: Record<string, string>): Spec => ({ ociVersion: '1.0.2', process: { cwd: '/', args }, annotations });
const fixture = (name: string): Spec => JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', name), 'utf8'));

const systemd = suite('isSystemdContainer');
systemd('by command, as hooks.d matches it', () => {
  for (const cmd of ['/sbin/init', '/usr/lib/systemd/systemd', 'init', 'systemd']) assert.ok(isSystemdContainer(spec([cmd])), cmd);
  for (const cmd of ['/bin/sh', '/sbin/tini', '/usr/bin/dumb-init', '/sbin/initctl', '']) assert.not.ok(isSystemdContainer(spec([cmd])), cmd);
});
systemd('the annotation wins over the command', () => {
  assert.ok(isSystemdContainer(spec(['/bin/myapp'], { 'io.oci-userns.systemd': 'true' })));
  assert.not.ok(isSystemdContainer(spec(['/sbin/init'], { 'io.oci-userns.systemd': 'false' })));
});
systemd.run();

const POLICIES: ShimPolicy[] = ['systemd', 'always', 'annotation'];
const acts = (s: Spec, policy: ShimPolicy) => shimVerdict(s, policy).act;

const verdict = suite('shimVerdict: does the runtime shim give a container a user namespace');
verdict('policy systemd (the default): podman --systemd=always yes, a plain podman container no', () => {
  assert.equal(shimVerdict(fixture('config-podman4.3-systemd.json'), 'systemd'), { act: true, complete: false, systemd: true, reason: 'policy systemd: a systemd container' });
  assert.not.ok(acts(fixture('config-podman4.3-plain.json'), 'systemd'));
  assert.not.ok(acts(fixture('config-runc1.1.5-spec.json'), 'systemd'));
});
verdict('policy always: every container without a user namespace', () => {
  for (const name of ['config-podman4.3-plain.json', 'config-runc1.1.5-spec.json', 'config-crun1.8.1-spec.json', 'config-podman4.3-systemd.json']) assert.ok(acts(fixture(name), 'always'), name);
});
verdict('policy annotation: only io.oci-userns.userns=auto, systemd or not', () => {
  assert.not.ok(acts(fixture('config-podman4.3-systemd.json'), 'annotation'));
  assert.ok(acts(spec(['/bin/sh'], { 'io.oci-userns.userns': 'auto' }), 'annotation'));
});
verdict('a spec with a user namespace is left alone under every policy and annotation', () => {
  const withUserns = fixture('config-podman4.3-userns-auto-systemd.json');
  withUserns.annotations = { ...withUserns.annotations, 'io.oci-userns.userns': 'auto' };
  for (const policy of POLICIES) assert.equal(shimVerdict(withUserns, policy), { act: false, complete: true, systemd: true, reason: 'the spec has a user namespace already' }, policy);
});
verdict("a systemd container in the engine's user namespace is completed, the pod's sandbox and opted-out containers are not", () => {
  const container = fixture('config-containerd1.7.24-userns-pod-container.json');
  assert.equal(shimVerdict(container, 'systemd'), { act: false, complete: true, systemd: true, reason: 'the spec has a user namespace already' });
  assert.is(shimVerdict(fixture('config-containerd1.7.24-userns-pod-sandbox.json'), 'always').complete, false);
  for (const optOut of [{ 'io.oci-userns.userns': 'off' }, { 'io.oci-userns.enable': 'false' }] as Array<Record<string, string>>) {
    assert.is(shimVerdict({ ...container, annotations: { ...container.annotations, ...optOut } }, 'always').complete, false, JSON.stringify(optOut));
  }
});
verdict('io.oci-userns.userns=auto asks, =off and io.oci-userns.enable=false opt out, under every policy', () => {
  for (const policy of POLICIES) {
    assert.ok(acts(spec(['/bin/sh'], { 'io.oci-userns.userns': 'auto' }), policy), policy);
    assert.not.ok(acts(spec(['/sbin/init'], { 'io.oci-userns.userns': 'off' }), policy), policy);
    assert.not.ok(acts(spec(['/sbin/init'], { 'io.oci-userns.enable': 'false' }), policy), policy);
  }
});
verdict('an unknown io.oci-userns.userns value is an input error naming the container', async () => {
  const error = await rejects(() => shimVerdict(spec(['/sbin/init'], { 'io.oci-userns.userns': 'yes' }), 'systemd', 'c1'), InputError, /io\.oci-userns\.userns is 'yes'.*'auto'.*'off'/);
  assert.is(error.containerId, 'c1');
});
verdict.run();

const request = suite('requestedRange: name and size the shim asks the allocator for');
request('one block and no name for the captured specs', () => {
  for (const name of ['config-podman4.3-systemd.json', 'config-runc1.1.5-spec.json', 'config-crun1.8.1-spec.json']) assert.equal(requestedRange(fixture(name), 65536), {}, name);
});
request('io.oci-userns.name names the block; ids beyond one block ask for more', () => {
  const s: Spec = { ociVersion: '1.0.2', process: { cwd: '/', args: ['/sbin/init'], user: { uid: 1000, gid: 70000, additionalGids: [5, 200000] } }, annotations: { 'io.oci-userns.name': 'web' } };
  assert.equal(requestedRange(s, 65536), { name: 'web', size: 200001 });
  assert.equal(requestedRange({ ...s, annotations: {}, process: { cwd: '/', user: { uid: 65535, gid: 0 } } }, 65536), {});
  assert.equal(requestedRange({ ...s, annotations: {}, process: { cwd: '/', user: { uid: 65536, gid: 0 } } }, 65536), { size: 65537 });
});
request.run();
