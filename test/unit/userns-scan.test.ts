import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HostError } from '../../lib/errors';
import { foreignRangesInUse, parseStorageContainers, readForeignIds, readLiveNamespaces, readStoredContainers } from '../../lib/ranges/userns-scan';

let dir = '';
let procRoot = '';

/** A fake /proc/PID with its user namespace link and maps (as `unshare --map-root-user` leaves them). */
function fakeProcess(pid: number | 'self', inode: number | undefined, uidMap = '0 0 4294967295\n', gidMap = uidMap, state = 'S') {
  const p = join(procRoot, String(pid));
  mkdirSync(join(p, 'ns'), { recursive: true });
  writeFileSync(join(p, 'stat'), `${pid} (sleep) ${state} ${Array(18).fill('0').join(' ')} 100 0 0\n`);
  if (inode !== undefined) symlinkSync(`user:[${inode}]`, join(p, 'ns', 'user'));
  writeFileSync(join(p, 'uid_map'), uidMap);
  writeFileSync(join(p, 'gid_map'), gidMap);
}

const scan = suite('readLiveNamespaces: every user namespace but the reader\'s, once');
scan.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-scan-'));
  procRoot = join(dir, 'proc');
  fakeProcess('self', 1);
});
scan.after.each(() => rmSync(dir, { recursive: true, force: true }));
scan('host processes are left out; many processes in one namespace are one row', () => {
  fakeProcess(10, 1);
  for (const pid of [20, 21, 22]) fakeProcess(pid, 7, '0 2147483647 65534\n');
  fakeProcess(30, 8, '0 1000 1\n1 100000 65536\n', '0 1000 1\n');
  mkdirSync(join(procRoot, 'sys'));
  const found = readLiveNamespaces(procRoot);
  assert.equal(
    found.map((n) => [n.inode, n.pid, n.processes, n.uidMappings.length, n.gidMappings.length]),
    [
      [7, 20, 3, 1, 1],
      [8, 30, 1, 2, 1],
    ],
  );
});
scan('a namespace link that may not be read: the maps still count, told apart by their contents', () => {
  fakeProcess(40, undefined, '0 300000 65536\n');
  fakeProcess(41, undefined, '0 300000 65536\n');
  fakeProcess(42, undefined);
  const rows = foreignRangesInUse({ namespaces: readLiveNamespaces(procRoot), stored: [] });
  assert.equal(rows.map((r) => r.id), ['the user namespace of process 40']);
});
scan('zombies hold nothing: a namespace whose processes are all zombies is not listed, nor counted', () => {
  fakeProcess(60, 7, '0 300000 65536\n', '0 300000 65536\n', 'Z');
  fakeProcess(61, 8, '0 400000 65536\n');
  fakeProcess(62, 8, '0 400000 65536\n', '0 400000 65536\n', 'Z');
  assert.equal(readLiveNamespaces(procRoot).map((n) => [n.inode, n.processes]), [[8, 1]]);
});
scan('a process gone between listing and reading is skipped', () => {
  mkdirSync(join(procRoot, '50', 'ns'), { recursive: true });
  symlinkSync('user:[9]', join(procRoot, '50', 'ns', 'user'));
  assert.equal(readLiveNamespaces(procRoot), []);
});
scan.run();

const storage = suite('containers/storage records: the ranges of stopped --userns=auto containers');
storage.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-scan-'));
});
storage.after.each(() => rmSync(dir, { recursive: true, force: true }));
// As podman 4.3 writes it for `podman create --userns=auto` (checked on this machine).
const RECORD = {
  id: 'a996c57d5380fa0faa3084dd4c71f401781ab50780013a12cdb597b507439e44',
  names: ['web'],
  image: '73312e95ccf3',
  layer: 'f413b8e9d081',
  uidmap: [{ container_id: 0, host_id: 2147483647, size: 65534 }],
  gidmap: [{ container_id: 0, host_id: 2147483647, size: 65534 }],
};
storage('containers.json and volatile-containers.json under every <driver>-containers folder; containers without a map are left out', () => {
  mkdirSync(join(dir, 'graph', 'overlay-containers'), { recursive: true });
  mkdirSync(join(dir, 'run', 'vfs-containers'), { recursive: true });
  writeFileSync(join(dir, 'graph', 'overlay-containers', 'containers.json'), JSON.stringify([RECORD, { id: 'plain', names: ['plain'] }]));
  writeFileSync(join(dir, 'run', 'vfs-containers', 'volatile-containers.json'), JSON.stringify([{ ...RECORD, id: 'v', names: [] }]));
  const stored = readStoredContainers([join(dir, 'graph'), join(dir, 'run'), join(dir, 'missing')]);
  assert.equal(stored.map((c) => [c.id.slice(0, 4), c.uidMappings]), [
    ['a996', [{ containerID: 0, hostID: 2147483647, size: 65534 }]],
    ['v', [{ containerID: 0, hostID: 2147483647, size: 65534 }]],
  ]);
  const rows = foreignRangesInUse({ namespaces: [], stored }, { skipIds: new Set(['v']) });
  assert.equal(rows.map((r) => r.id), [`containers/storage container web (${join(dir, 'graph', 'overlay-containers', 'containers.json')})`]);
});
storage('a list that is not JSON is a host error naming it', () => {
  assert.throws(() => parseStorageContainers('{', '/x/containers.json'), (e: unknown) => e instanceof HostError && /containers\/storage list \/x\/containers.json/.test((e as Error).message));
});
storage('on this host: the scan reads the real /proc without error and never reports its own namespace', () => {
  const found = readForeignIds({ storageRoots: [] });
  const self = readLiveNamespaces().find((n) => n.pid === process.pid);
  assert.is(self, undefined);
  assert.ok(Array.isArray(found.namespaces));
});
storage.run();
