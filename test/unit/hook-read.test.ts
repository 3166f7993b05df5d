// The hook's read step (lib/hook/read.ts): input parsed, facts gathered
// only for a container to set up, the rootfs resolved once. No root needed.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS, type Config } from '../../lib/config/config';
import { HostError, InputError } from '../../lib/errors';
import { readHook } from '../../lib/hook/read';
import { nullLogger } from '../../lib/log/logger';
import { rejects } from '../helpers/assert-error';

const spec = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'config-runc-spec-userns.json'), 'utf8'));
const uid = process.getuid!();
const gid = process.getgid!();
let dir = '';

const test = suite('hook read: input and facts');
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-hook-read-'));
  mkdirSync(join(dir, 'bundle', 'layer'), { recursive: true });
  symlinkSync('layer', join(dir, 'bundle', 'rootfs'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

const stateText = (over: Record<string, unknown> = {}) => JSON.stringify({ ociVersion: '1.0.2', id: 'c1', status: 'creating', pid: 4242, bundle: join(dir, 'bundle'), ...over });
const read = (value: unknown, opts: { stage?: 'createRuntime' | 'poststop'; state?: string; mode?: Config['shift']['mode']; method?: Config['shift']['method'] } = {}) => {
  writeFileSync(join(dir, 'bundle', 'config.json'), JSON.stringify(value));
  const config = { ...DEFAULTS, stateDir: join(dir, 'state'), shift: { ...DEFAULTS.shift, mode: opts.mode ?? 'auto', method: opts.method ?? 'auto' } };
  return readHook({ stage: opts.stage ?? 'createRuntime', stateText: opts.state ?? stateText(), config, logger: nullLogger, procRoot: join(dir, 'proc') });
};
const mapped = (hostID: number) => [{ containerID: 0, hostID, size: 65536 }];

test('no facts for a container without a user namespace, nor at poststop', async () => {
  assert.is((await read({ ...spec, linux: { ...spec.linux, namespaces: [{ type: 'mount' }] } })).facts, undefined);
  assert.is((await read(spec, { stage: 'poststop', state: stateText({ status: 'stopped', pid: undefined }) })).facts, undefined);
});
test('the rootfs resolved once to its real path; "shifted" from its owner when no state is recorded', async () => {
  const owned = await read({ ...spec, linux: { ...spec.linux, uidMappings: mapped(uid), gidMappings: mapped(gid) } });
  // mkdtemp made dir 0700, owned by this user: inside the range here, so it closes the way to the rootfs.
  assert.equal(owned.facts?.rootfs, { path: join(dir, 'bundle', 'layer'), shifted: true, closedBy: dir });
  const other = uid === 100000 ? 200000 : 100000;
  const notYet = await read({ ...spec, linux: { ...spec.linux, uidMappings: mapped(other), gidMappings: mapped(other) } });
  const closedBy = uid === 0 ? { closedBy: dir } : { openAt: join(dir, 'bundle', 'layer') };
  assert.equal(notYet.facts, { mappings: { uidMappings: mapped(other), gidMappings: mapped(other) }, rootfs: { path: join(dir, 'bundle', 'layer'), shifted: false, ...closedBy } });
});
test('which directory closes the way to the rootfs is looked up unless shift.method is chown', async () => {
  const ranged = { ...spec, linux: { ...spec.linux, uidMappings: mapped(uid), gidMappings: mapped(gid) } };
  chmodSync(dir, 0o755);
  assert.is((await read(ranged)).facts?.rootfs?.closedBy, undefined, 'open all the way: tmpdir 1777, then 0755 directories');
  chmodSync(join(dir, 'bundle'), 0o700);
  assert.is((await read(ranged)).facts?.rootfs?.closedBy, join(dir, 'bundle'));
  assert.is((await read(ranged, { method: 'chown' })).facts?.rootfs?.closedBy, undefined);
});
test('shift.mode never: the rootfs is not looked at, even when it is missing', async () => {
  rmSync(join(dir, 'bundle', 'layer'), { recursive: true });
  assert.is((await read(spec, { mode: 'never' })).facts?.rootfs, undefined);
  await rejects(read(spec), InputError, /rootfs .*bundle\/rootfs does not exist/);
});
test('a user namespace joined by path: the mappings of the process, or a clear error when it is gone', async () => {
  const joined = { ...spec, linux: { ...spec.linux, uidMappings: undefined, gidMappings: undefined, namespaces: [...spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'user'), { type: 'user', path: '/proc/4242/ns/user' }] } };
  await rejects(read(joined), HostError, /^container process 4242 exited while the hook was setting it up/);
  mkdirSync(join(dir, 'proc', '4242'), { recursive: true });
  writeFileSync(join(dir, 'proc', '4242', 'uid_map'), '         0     300000      65536\n');
  writeFileSync(join(dir, 'proc', '4242', 'gid_map'), '         0     300000      65536\n');
  assert.equal((await read(joined)).facts?.mappings, { uidMappings: mapped(300000), gidMappings: mapped(300000) });
});
test.run();
