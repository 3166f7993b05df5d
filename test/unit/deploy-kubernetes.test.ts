// deploy/kubernetes: the RuntimeClass and the node-installer DaemonSet
// parse, are the kinds Kubernetes expects, and agree with install.sh (the
// handler name, the options the installer runs it with).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseAllDocuments } from 'yaml';

const root = join(import.meta.dirname, '..', '..');
const deploy = join(root, 'deploy', 'kubernetes');
const installSh = readFileSync(join(root, 'install.sh'), 'utf8');

type Doc = Record<string, any>;
function load(name: string): Doc[] {
  const docs = parseAllDocuments(readFileSync(join(deploy, name), 'utf8'));
  for (const doc of docs) assert.equal(doc.errors, [], `${name}: ${doc.errors.join('; ')}`);
  return docs.map((doc) => doc.toJS() as Doc);
}

const test = suite('deploy/kubernetes');

test('the RuntimeClass names the handler that install.sh --containerd and --crio configure', () => {
  const [rc, ...rest] = load('runtimeclass.yaml');
  assert.is(rest.length, 0);
  assert.is(rc!.apiVersion, 'node.k8s.io/v1');
  assert.is(rc!.kind, 'RuntimeClass');
  assert.match(rc!.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a DNS label');
  assert.ok(installSh.includes(`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${rc!.handler}]`), 'containerd handler');
  assert.ok(installSh.includes(`[crio.runtime.runtimes.${rc!.handler}]`), 'CRI-O handler');
});

test('the DaemonSet selects its own pods, mounts what it names, runs install.sh with options it has', () => {
  const [ds] = load('node-installer.yaml');
  assert.is(ds!.apiVersion, 'apps/v1');
  assert.is(ds!.kind, 'DaemonSet');
  const spec = ds!.spec;
  for (const [key, value] of Object.entries(spec.selector.matchLabels)) assert.is(spec.template.metadata.labels[key], value, `selector ${key}`);
  const pod = spec.template.spec;
  const [rc] = load('runtimeclass.yaml');
  assert.equal(pod.nodeSelector, rc!.scheduling.nodeSelector, 'installs on the nodes the RuntimeClass schedules to');
  const volumes = new Set(pod.volumes.map((v: Doc) => v.name));
  const containers: Doc[] = [...(pod.initContainers ?? []), ...pod.containers];
  for (const c of containers) {
    assert.ok(c.name && c.image, `container ${c.name} has a name and an image`);
    for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${c.name} mounts volume ${m.name}, which exists`);
  }
  const [install] = pod.initContainers;
  assert.is(install.securityContext.privileged, true);
  assert.equal(install.env.find((e: Doc) => e.name === 'DESTDIR'), { name: 'DESTDIR', value: '/host' });
  assert.is(install.volumeMounts.find((m: Doc) => m.mountPath === '/host').name, pod.volumes.find((v: Doc) => v.hostPath?.path === '/').name, '/host is the host root');
  const script = [...install.command, ...install.args].join(' ');
  const options = script.match(/install\.sh((?: --[a-z-]+(?: \/[^ ]+)?)*)/)![1]!.match(/--[a-z-]+/g)!;
  for (const option of options) assert.ok(installSh.includes(`    ${option})`), `install.sh takes ${option}`);
  assert.ok(options.includes('--containerd'));
});

test.run();
