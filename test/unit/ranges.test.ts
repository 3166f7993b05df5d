import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS, type PoolConfig } from '../../lib/config/config';
import { HostError, InputError, RefusedError } from '../../lib/errors';
import type { IdMapping } from '../../lib/oci/idmap';
import { memoryLogger } from '../../lib/log/logger';
import { allocateRange, gcRanges, guardContainer, listRanges, releaseContainer, repairRegistry } from '../../lib/ranges/ranges';
import { registryPath } from '../../lib/ranges/registry';
import { rejects } from '../helpers/assert-error';

const B = 65536;

let dir = '';
let stateDir = '';
let procRoot = '';
let pool: PoolConfig;

/** A fake /proc/PID/stat; the command name has the spaces and parentheses real ones may have. */
function fakeProcess(pid: number, start: number, state = 'S', maps?: { uid: string; gid: string }) {
  mkdirSync(join(procRoot, String(pid)), { recursive: true });
  writeFileSync(join(procRoot, String(pid), 'stat'), `${pid} (a (b) c) ${state} ${Array(18).fill('0').join(' ')} ${start} 0 0\n`);
  if (maps) {
    writeFileSync(join(procRoot, String(pid), 'uid_map'), maps.uid);
    writeFileSync(join(procRoot, String(pid), 'gid_map'), maps.gid);
  }
}
/** A fake process in user namespace `inode`, mapped 0 -> hostID (size ids); the reader ('self') is in namespace 1. */
function fakeInNamespace(pid: number, inode: number, hostID: number, size = B) {
  for (const [p, ino] of [['self', 1], [String(pid), inode]] as const) {
    mkdirSync(join(procRoot, p, 'ns'), { recursive: true });
    rmSync(join(procRoot, p, 'ns', 'user'), { force: true });
    symlinkSync(`user:[${ino}]`, join(procRoot, p, 'ns', 'user'));
  }
  fakeProcess(pid, 7, 'S', { uid: `0 ${hostID} ${size}\n`, gid: `0 ${hostID} ${size}\n` });
}
const map = (hostID: number, size = B): IdMapping[] => [{ containerID: 0, hostID, size }];
const guard = (id: string, hostID: number, extra: Partial<Parameters<typeof guardContainer>[0]> = {}) =>
  guardContainer({ stateDir, procRoot, storageRoots: [], id, uidMappings: map(hostID), gidMappings: map(hostID), source: 'external', overlap: 'refuse', ...extra });
const alloc = (id: string, extra: Partial<Parameters<typeof allocateRange>[0]> = {}) =>
  allocateRange({ stateDir, procRoot, storageRoots: [], pool, passwdFile: join(dir, 'passwd'), id, source: 'cli', ...extra });

function setup() {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-ranges-'));
  stateDir = join(dir, 'state');
  procRoot = join(dir, 'proc');
  mkdirSync(procRoot);
  writeFileSync(join(dir, 'subuid'), `containers:${4 * B}:${4 * B}\n`);
  writeFileSync(join(dir, 'subgid'), `containers:${4 * B}:${4 * B}\n`);
  writeFileSync(join(dir, 'passwd'), '');
  pool = { ...DEFAULTS.pool, subuidFile: join(dir, 'subuid'), subgidFile: join(dir, 'subgid') };
}
const teardown = () => rmSync(dir, { recursive: true, force: true });

const allocation = suite('allocateRange');
allocation.before.each(setup);
allocation.after.each(teardown);
allocation('allocates a block inside the pool and records it', async () => {
  const e = await alloc('c1');
  const host = e.uidMappings[0]!.hostID;
  assert.ok(host >= 4 * B && host < 8 * B && host % B === 0);
  assert.equal(e.gidMappings, e.uidMappings);
  assert.is(e.source, 'cli');
  assert.equal(await listRanges({ stateDir }), [e]);
});
allocation('the same id again gets the same entry; another size for it is an error', async () => {
  const first = await alloc('c1', { source: 'shim' });
  assert.equal(await alloc('c1', { source: 'shim' }), first);
  assert.equal(await alloc('c1', { size: 100 }), first);
  await rejects(alloc('c1', { size: 2 * B }), InputError, /already has a range of 65536 ids.*oci-userns release c1/);
  assert.is((await listRanges({ stateDir })).length, 1);
});
allocation('a released name comes back to its range', async () => {
  const first = await alloc('c1', { name: 'web' });
  await alloc('c2');
  assert.equal(await releaseContainer({ stateDir, id: 'c1' }), first);
  const again = await alloc('c3', { name: 'web' });
  assert.equal(again.uidMappings, first.uidMappings);
  assert.is(again.name, 'web');
});
allocation('fills the pool, then fails naming what is in use', async () => {
  const got = [];
  for (let i = 0; i < 4; i++) got.push((await alloc(`c${i}`)).uidMappings[0]!.hostID);
  assert.equal(new Set(got).size, 4);
  await rejects(alloc('c4'), HostError, /no free block.*in use by 4 containers: c\d/);
});
allocation('ranges registered by the hook are in use, and entries whose process is gone are not', async () => {
  fakeProcess(100, 7);
  for (let i = 0; i < 4; i++) await guard(`x${i}`, (4 + i) * B, { pid: 100 });
  await rejects(alloc('c'), HostError, /no free block/);
  rmSync(join(procRoot, '100'), { recursive: true });
  const logger = memoryLogger();
  await alloc('c', { logger });
  assert.equal((await listRanges({ stateDir })).map((e) => e.id), ['c']);
  assert.match(logger.records[0]!.message, /dropped the range of container x0: its process is gone/);
});
allocation('the shim is refused an id whose registered container runs (the same id under another runtime root): two containers would share a range', async () => {
  fakeProcess(100, 7);
  await guard('dup', 4 * B, { pid: 100, source: 'shim' });
  await rejects(alloc('dup', { source: 'shim' }), RefusedError, 'container id dup is in use by a running container (process 100');
  assert.equal((await listRanges({ stateDir })).map((e) => [e.id, e.pid]), [['dup', 100]], 'nothing changed');
  await alloc('dup'); // oci-userns alloc of a registered id shows its range, as before
  rmSync(join(procRoot, '100'), { recursive: true });
  assert.equal((await alloc('dup', { source: 'shim' })).uidMappings, [{ containerID: 0, hostID: 4 * B, size: B }], 'once its process is gone the id gets its range again');
});
allocation('host-wide: skips the ids of a live user namespace outside the registry and of a stored --userns=auto container', async () => {
  // Two blocks held by, say, `unshare --map-users`; one by a stopped podman container.
  fakeInNamespace(600, 7, 4 * B, 2 * B);
  const storage = join(dir, 'storage');
  mkdirSync(join(storage, 'overlay-containers'), { recursive: true });
  writeFileSync(join(storage, 'overlay-containers', 'containers.json'), JSON.stringify([{ id: 'p', names: ['p'], uidmap: [{ container_id: 0, host_id: 6 * B + 1, size: 65534 }], gidmap: [{ container_id: 0, host_id: 6 * B + 1, size: 65534 }] }]));
  const entry = await alloc('c', { storageRoots: [storage] });
  assert.equal(entry.uidMappings, map(7 * B));
  await rejects(alloc('d', { storageRoots: [storage] }), HostError, /the user namespace of process 600 \(user:\[7\]\) \(uids 262144-393215\), containers\/storage container p /);
});
allocation('a container on a tree another shim container owns gets that range, and the guard lets the two overlap; on a tree idmapped containers share, each gets its own', async () => {
  const owned = join(dir, 'owned');
  mkdirSync(owned);
  const a = await alloc('a', { source: 'shim', rootfs: owned });
  const b = await alloc('b', { source: 'shim', rootfs: owned, rootfsIdmapped: true });
  assert.equal(b.uidMappings, a.uidMappings, 'the tree is shifted into a\'s range: b can use it only there');
  assert.is(b.rootfsIdmapped, undefined);
  await guard('b', a.uidMappings[0]!.hostID, { source: 'shim', rootfs: owned });
  await rejects(guard('x', a.uidMappings[0]!.hostID), RefusedError, 'overlap those of a');
  const shared = join(dir, 'shared');
  mkdirSync(shared);
  const c = await alloc('c', { source: 'shim', rootfs: shared, rootfsIdmapped: true });
  const d = await alloc('d', { source: 'shim', rootfs: shared, rootfsIdmapped: true });
  assert.not.equal(c.uidMappings, d.uidMappings);
  assert.equal([c.rootfsIdmapped, d.rootfsIdmapped], [true, true]);
  for (const id of ['c', 'd']) await releaseContainer({ stateDir, id });
  const reserved = join(dir, 'reserved');
  mkdirSync(reserved);
  await alloc('e', { rootfs: reserved });
  await rejects(alloc('f', { source: 'shim', rootfs: reserved }), RefusedError, 'in use by container e'); // only a range the shim gave from its pool is shared
});
allocation.run();

const guarding = suite('guardContainer');
guarding.before.each(setup);
guarding.after.each(teardown);
guarding('registers a container with its pid and start time; again is the same', async () => {
  fakeProcess(200, 1234);
  const { entry, conflicts, created } = await guard('a', 10 * B, { pid: 200, name: 'web' });
  assert.equal(conflicts, []);
  assert.ok(created);
  assert.equal({ ...entry, since: '' }, { id: 'a', uidMappings: map(10 * B), gidMappings: map(10 * B), since: '', source: 'external', name: 'web', pid: 200, pidStart: 1234 });
  const inode = statSync(registryPath(stateDir)).ino;
  const again = await guard('a', 10 * B, { pid: 200, name: 'web' });
  assert.equal(again.entry, entry);
  assert.not.ok(again.created);
  assert.is(statSync(registryPath(stateDir)).ino, inode, 'guarding again rewrote the registry');
});
guarding("the shim's allocation keeps its source and gains the pid", async () => {
  const allocated = await alloc('s', { source: 'shim' });
  fakeProcess(300, 5);
  const { entry, created } = await guardContainer({ stateDir, procRoot, id: 's', uidMappings: allocated.uidMappings, gidMappings: allocated.gidMappings, source: 'shim', pid: 300, overlap: 'refuse' });
  assert.not.ok(created);
  assert.is(entry.source, 'shim');
  assert.is(entry.since, allocated.since);
  assert.is(entry.pid, 300);
});
guarding('refuses an overlap with another live container and changes nothing', async () => {
  fakeProcess(200, 1);
  await guard('a', 10 * B, { pid: 200 });
  const before = readFileSync(registryPath(stateDir), 'utf8');
  const partly: IdMapping[] = [{ containerID: 0, hostID: 10 * B + B / 2, size: B }];
  for (const attempt of [() => guard('b', 10 * B), () => guardContainer({ stateDir, procRoot, storageRoots: [], id: 'b', uidMappings: map(20 * B), gidMappings: partly, source: 'external', overlap: 'refuse' })]) {
    await rejects(attempt(), RefusedError, /^container b: its host ids .* overlap those of a \(uids 0:655360:65536/);
  }
  assert.is(readFileSync(registryPath(stateDir), 'utf8'), before);
});
guarding('an allocation not started yet counts as live', async () => {
  const allocated = await alloc('s');
  await rejects(guard('b', allocated.uidMappings[0]!.hostID), RefusedError);
});
guarding("overlap 'warn' registers and reports the conflict", async () => {
  await guard('a', 10 * B);
  const logger = memoryLogger();
  const { entry, conflicts } = await guard('b', 10 * B, { overlap: 'warn', logger });
  assert.is(entry.id, 'b');
  assert.equal(conflicts.map((c) => c.id), ['a']);
  assert.is(logger.records[0]!.level, 'warn');
  assert.equal((await listRanges({ stateDir })).map((e) => e.id), ['a', 'b']);
});
guarding('an overlapping entry whose process is gone (no poststop) is dropped, not a conflict', async () => {
  fakeProcess(200, 1);
  await guard('a', 10 * B, { pid: 200 });
  fakeProcess(200, 2); // the pid now belongs to another process
  const { conflicts } = await guard('b', 10 * B);
  assert.equal(conflicts, []);
  assert.equal((await listRanges({ stateDir })).map((e) => e.id), ['b']);
});
guarding('disjoint containers and the same id with new ids', async () => {
  await guard('a', 10 * B);
  await guard('b', 11 * B);
  const logger = memoryLogger();
  await guard('a', 12 * B, { logger });
  assert.match(logger.records[0]!.message, /container a was registered with other ids/);
  assert.equal((await listRanges({ stateDir })).map((e) => [e.id, e.uidMappings[0]!.hostID]), [
    ['a', 12 * B],
    ['b', 11 * B],
  ]);
});
guarding('bad mappings are input errors', async () => {
  await rejects(guardContainer({ stateDir, id: 'a', uidMappings: [{ containerID: 0, hostID: 1, size: 0 }], gidMappings: map(0), source: 'external', overlap: 'refuse' }), InputError);
});
guarding('host-wide: refuses ids a live user namespace outside the registry holds, not its own namespace', async () => {
  fakeInNamespace(600, 7, 10 * B + 1000, 10);
  await rejects(guard('b', 10 * B), RefusedError, /^container b: its host ids .* overlap those of the user namespace of process 600 \(user:\[7\]\) \(uids 0:656360:10, gids 0:656360:10, not in the registry\)/);
  fakeInNamespace(601, 8, 12 * B);
  const { conflicts } = await guard('own', 12 * B, { pid: 601 });
  assert.equal(conflicts, [], 'the container\'s own namespace is no conflict');
});
guarding("a pod's container that joined its sandbox's namespace: the pod-mates' containers/storage records are no conflict; a stopped container's are", async () => {
  const storage = join(dir, 'storage');
  mkdirSync(join(storage, 'overlay-containers'), { recursive: true });
  const record = (id: string, hostID: number) => ({ id, names: [id], uidmap: [{ container_id: 0, host_id: hostID, size: B }], gidmap: [{ container_id: 0, host_id: hostID, size: B }] });
  writeFileSync(join(storage, 'overlay-containers', 'containers.json'), JSON.stringify([record('infra', 10 * B), record('app', 10 * B), record('sidecar', 10 * B)]));
  // The sandbox's pause process (not registered: no hook ran for it), then the app container in its namespace.
  fakeInNamespace(700, 7, 10 * B);
  fakeInNamespace(701, 7, 10 * B);
  const { conflicts } = await guard('app', 10 * B, { pid: 701, storageRoots: [storage] });
  assert.equal(conflicts, []);
  // A fresh namespace with the same ids as a stopped container: that container would come back on them.
  fakeInNamespace(702, 9, 10 * B);
  await rejects(guard('other', 10 * B, { pid: 702, storageRoots: [storage], overlap: 'refuse' }), RefusedError, /overlap those of .*containers\/storage container infra/);
});
guarding('a container that joined a registered container\'s user namespace shares its range until the last one is gone', async () => {
  fakeInNamespace(200, 7, 10 * B);
  await guard('a', 10 * B, { pid: 200 });
  fakeInNamespace(201, 7, 10 * B);
  const { entry, conflicts } = await guard('b', 10 * B, { pid: 201 });
  assert.equal(conflicts, []);
  assert.is(entry.joined, 'a');
  fakeInNamespace(202, 9, 10 * B);
  await rejects(guard('c', 10 * B, { pid: 202 }), RefusedError, /overlap those of a .*; b /);
  await releaseContainer({ stateDir, id: 'a' });
  await rejects(guard('c', 10 * B, { pid: 202 }), RefusedError, /overlap those of b /);
  await releaseContainer({ stateDir, id: 'b' });
  for (const pid of [200, 201]) rmSync(join(procRoot, String(pid)), { recursive: true });
  assert.equal((await guard('c', 10 * B, { pid: 202 })).conflicts, []);
});
guarding.run();

const release = suite('releaseContainer');
release.before.each(setup);
release.after.each(teardown);
release('drops only that entry; an unknown id changes nothing and needs no state directory', async () => {
  assert.is(await releaseContainer({ stateDir, id: 'nobody' }), undefined);
  await guard('a', 10 * B);
  await guard('b', 11 * B);
  assert.is((await releaseContainer({ stateDir, id: 'a' }))?.id, 'a');
  assert.is(await releaseContainer({ stateDir, id: 'a' }), undefined);
  assert.equal((await listRanges({ stateDir })).map((e) => e.id), ['b']);
});
release.run();

const gc = suite('gcRanges');
gc.before.each(setup);
gc.after.each(teardown);
gc('drops gone processes and unknown containers past the grace period; keeps the rest', async () => {
  const runc = join(dir, 'run', 'runc');
  mkdirSync(join(runc, 'known'), { recursive: true });
  writeFileSync(join(runc, 'known', 'state.json'), '{}');
  fakeProcess(400, 9);
  // Allocation drops entries whose process is gone, so reserve first.
  await alloc('reserved', { source: 'cli' });
  await guard('running', 10 * B, { pid: 400 });
  await guard('stopped', 11 * B, { pid: 401 });
  await guard('known', 12 * B);
  await guard('unknown', 13 * B);
  const now = new Date(Date.now() + 60_000);
  assert.equal((await gcRanges({ stateDir, procRoot, runtimeRoots: [runc], now })).map((e) => e.id), ['stopped']);
  const later = new Date(Date.now() + 3_600_000);
  assert.equal((await gcRanges({ stateDir, procRoot, runtimeRoots: [runc], now: later })).map((e) => e.id), ['unknown']);
  assert.equal((await listRanges({ stateDir })).map((e) => e.id).sort(), ['known', 'reserved', 'running']);
});
gc('a zombie is gone', async () => {
  fakeProcess(500, 3, 'Z');
  await guard('z', 10 * B, { pid: 500 });
  fakeProcess(500, 3, 'Z');
  assert.equal((await gcRanges({ stateDir, procRoot, runtimeRoots: [] })).map((e) => e.id), ['z']);
});
gc.run();

const repair = suite('repairRegistry');
repair.before.each(setup);
repair.after.each(teardown);
repair('moves the corrupt registry aside and rebuilds it from running containers', async () => {
  mkdirSync(stateDir, { mode: 0o700 });
  writeFileSync(registryPath(stateDir), '{"version":1,"entr');
  const runc = join(dir, 'run', 'runc');
  const crun = join(dir, 'run', 'crun');
  const [runcRootfs, crunBundle] = [join(dir, 'r1-rootfs'), join(dir, 'c1-bundle')];
  mkdirSync(runcRootfs);
  mkdirSync(join(crunBundle, 'rootfs'), { recursive: true });
  for (const [root, id, file, body] of [
    [runc, 'r1', 'state.json', { init_process_pid: 600, init_process_start: 11, config: { rootfs: runcRootfs } }],
    [crun, 'c1', 'status', { pid: 601, 'process-start-time': 12, rootfs: 'rootfs', bundle: crunBundle }],
    [runc, 'host', 'state.json', { init_process_pid: 602, init_process_start: 13 }],
    [runc, 'dead', 'state.json', { init_process_pid: 603, init_process_start: 14 }],
  ] as const) {
    mkdirSync(join(root, id), { recursive: true });
    writeFileSync(join(root, id, file), JSON.stringify(body));
  }
  fakeProcess(600, 11, 'S', { uid: `0 ${10 * B} ${B}\n`, gid: `0 ${10 * B} ${B}\n` });
  fakeProcess(601, 12, 'S', { uid: `0 ${11 * B} ${B}\n`, gid: `0 ${12 * B} ${B}\n` });
  fakeProcess(602, 13, 'S', { uid: '0 0 4294967295\n', gid: '0 0 4294967295\n' });
  // c1 sees its rootfs through an idmapped mount (the shim's private one, or the hook's).
  writeFileSync(join(procRoot, '601', 'mountinfo'), '1 0 8:1 /c1-bundle/rootfs / rw,idmapped - ext4 /dev/sda1 rw\n');
  await rejects(listRanges({ stateDir }), HostError, /is corrupt/);
  const result = await repairRegistry({ stateDir, procRoot, runtimeRoots: [runc, crun] });
  assert.is(readFileSync(result.movedTo!, 'utf8'), '{"version":1,"entr');
  const listed = await listRanges({ stateDir });
  assert.equal(listed.map((e) => [e.id, e.uidMappings[0]!.hostID, e.gidMappings[0]!.hostID, e.pid, e.source, e.runtimeRoot]), [
    ['r1', 10 * B, 10 * B, 600, 'external', runc],
    ['c1', 11 * B, 12 * B, 601, 'external', crun],
  ]);
  assert.equal(listed.map((e) => [e.rootfs, e.rootfsIdmapped, typeof e.rootfsTree]), [
    [runcRootfs, undefined, 'string'],
    [join(crunBundle, 'rootfs'), true, 'string'],
  ], 'the rootfs-in-use rule holds again: each rootfs recorded, with how the container sees it');
});
repair.run();
