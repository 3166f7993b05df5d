// Telling a pod's sandbox from its app containers (lib/oci/pod.ts) on the
// config.json containerd 1.7.24 wrote for a pod without userns_options,
// and what the shim learns from `RUNTIME --version` (lib/shim/runtime-version.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { podRole } from '../../lib/oci/pod';
import { ownRangeInPodError } from '../../lib/shim/pod';
import { joinsHostNetworkAfterUserNamespace, parseRuntimeVersion } from '../../lib/shim/runtime-version';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const fixture = (name: string) => JSON.parse(readFileSync(join(fixtures, name), 'utf8'));
const sandbox = fixture('config-containerd1.7.24-pod-sandbox.json');
const container = fixture('config-containerd1.7.24-pod-container.json');
const SANDBOX_ID = '7da62f0fe47904aa7ddd6d10f425a5da206fdc678ecc16b51087cf38d8aca3b8';

const role = suite('pod role from CRI annotations');
role('containerd: the sandbox and its app container name the same sandbox id', () => {
  assert.equal(podRole(sandbox), { kind: 'sandbox', sandboxId: SANDBOX_ID, engine: 'containerd' });
  assert.equal(podRole(container), { kind: 'container', sandboxId: SANDBOX_ID, engine: 'containerd' });
});
role('containerd with userns_options (case A specs) are pods too', () => {
  assert.is(podRole(fixture('config-containerd1.7.24-userns-pod-sandbox.json'))?.kind, 'sandbox');
  assert.is(podRole(fixture('config-containerd1.7.24-userns-pod-container.json'))?.kind, 'container');
});
role('CRI-O annotations', () => {
  const spec = { ociVersion: '1.0.2', annotations: { 'io.kubernetes.cri-o.ContainerType': 'container', 'io.kubernetes.cri-o.SandboxID': 'abc' } };
  assert.equal(podRole(spec), { kind: 'container', sandboxId: 'abc', engine: 'cri-o' });
});
role('not a pod: podman, no annotations, a type without a sandbox id, an unknown type', () => {
  assert.is(podRole(fixture('config-podman4.3-systemd.json')), undefined);
  assert.is(podRole({ ociVersion: '1.0.2' }), undefined);
  assert.is(podRole({ ociVersion: '1.0.2', annotations: { 'io.kubernetes.cri.container-type': 'sandbox' } }), undefined);
  assert.is(podRole({ ociVersion: '1.0.2', annotations: { 'io.kubernetes.cri.container-type': 'other', 'io.kubernetes.cri.sandbox-id': 'x' } }), undefined);
});
role('containerd passes the pod annotation io.oci-userns.userns through to both (pod_annotations)', () => {
  assert.is(sandbox.annotations['io.oci-userns.userns'], 'auto');
  assert.is(container.annotations['io.oci-userns.userns'], 'auto');
});
role.run();

const version = suite('runtime version');
version('runc and crun version lines', () => {
  assert.equal(parseRuntimeVersion('runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\n'), { name: 'runc', version: [1, 1, 5] });
  assert.equal(parseRuntimeVersion('crun version 1.8.1\ncommit: f8a0\n'), { name: 'crun', version: [1, 8, 1] });
  assert.equal(parseRuntimeVersion(''), { name: '' });
});
version('who joins the host-owned network namespace after a user namespace: crun, runc 1.3+; not runc 1.1/1.2 nor an unknown runtime', () => {
  const joins = (text: string) => joinsHostNetworkAfterUserNamespace(parseRuntimeVersion(text));
  assert.equal(['crun version 1.8.1', 'runc version 1.3.0', 'runc version 2.0.0', 'runc version 1.1.5', 'runc version 1.2.9', 'youki version 0.3.0', ''].map(joins), [true, true, true, false, false, false, false]);
});
version.run();

const refusal = suite('an app container refused a user namespace of its own: the hint names the engine\'s way');
refusal('CRI-O pods get their user namespace from io.kubernetes.cri-o.userns-mode; containerd pods from our pod annotation', () => {
  const crio = ownRangeInPodError({ kind: 'container', sandboxId: 's1', engine: 'cri-o' }, 'c1');
  assert.match(crio.message, /container c1 of pod sandbox s1/);
  assert.match(crio.hint ?? '', /io\.kubernetes\.cri-o\.userns-mode/);
  assert.not.match(crio.hint ?? '', /io\.oci-userns\.userns=auto/);
  const containerd = ownRangeInPodError({ kind: 'container', sandboxId: 's1', engine: 'containerd' }, 'c1');
  assert.match(containerd.hint ?? '', /io\.oci-userns\.userns=auto/);
});
refusal.run();
