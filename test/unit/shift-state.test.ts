import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../lib/errors';
import { parseIdMap } from '../../lib/oci/idmap';
import { alreadyShifted, forgetState, parseState, readStateFast, statePaths, writeStateFile, type ShiftState } from '../../lib/shift/state';
import { rejects } from '../helpers/assert-error';

const test = suite('shift state record');
let work = '';
let rootfs = '';
let stateDir = '';
test.before.each(() => {
  work = mkdtempSync(join(tmpdir(), 'oci-userns-state-'));
  rootfs = join(work, 'rootfs');
  stateDir = join(work, 'state');
  mkdirSync(rootfs);
});
test.after.each(() => rmSync(work, { recursive: true, force: true }));

const me = () => process.getuid!();
const mine = () => ({ uid: parseIdMap(`0:${me()}:1`), gid: parseIdMap(`0:${process.getgid!()}:1`) });
const identity = { uid: parseIdMap('0:0:4294967295'), gid: parseIdMap('0:0:4294967295') };
const state = (over: Partial<ShiftState> = {}): ShiftState => ({ version: 1, seq: 3, rootfs, original: identity, current: mine(), previous: identity, ...over });

test('written 0600 under stateDir/shift and read back; a record of another rootfs (a key collision) reads as none', () => {
  writeStateFile(stateDir, state());
  const paths = statePaths(stateDir, rootfs);
  assert.is(statSync(paths.state).mode & 0o777, 0o600);
  assert.equal(readStateFast(stateDir, rootfs), state());
  writeFileSync(paths.state, JSON.stringify(state({ rootfs: '/elsewhere' })));
  assert.is(readStateFast(stateDir, rootfs), undefined);
  assert.is(readStateFast(stateDir, join(work, 'never-shifted')), undefined);
});

test('a record of the tree once at this path (another root inode, or an owner it does not allow) reads as none on the fast path', () => {
  const st = statSync(rootfs, { bigint: true });
  const tree = { id: 'abc', ino: st.ino.toString(), birthNs: st.birthtimeNs.toString() };
  writeStateFile(stateDir, state({ tree }));
  assert.equal(readStateFast(stateDir, rootfs), state({ tree }), 'its own tree');
  writeStateFile(stateDir, state({ tree: { ...tree, ino: `${st.ino + 1n}` } }));
  assert.is(readStateFast(stateDir, rootfs), undefined, 'the tree was replaced: another inode');
  rmSync(rootfs, { recursive: true });
  mkdirSync(rootfs);
  writeStateFile(stateDir, state({ tree }));
  const again = statSync(rootfs, { bigint: true });
  if (again.ino !== st.ino || again.birthtimeNs !== st.birthtimeNs) assert.is(readStateFast(stateDir, rootfs), undefined, 'unpacked again at the same path');
  const other = parseIdMap(`0:${me() + 1}:1`);
  writeStateFile(stateDir, state({ current: { uid: other, gid: other } }));
  assert.is(readStateFast(stateDir, rootfs), undefined, 'a record without a tree: the owner it allows is not the root directory\'s');
});

test('state, journal and lock paths are per rootfs, and the lock is a directory name of its own', () => {
  const a = statePaths(stateDir, '/a');
  const b = statePaths(stateDir, '/b');
  assert.is.not(a.state, b.state);
  assert.equal([a.state.endsWith('.json'), a.journal.endsWith('.journal'), a.lock.endsWith('.lock.d')], [true, true, true]);
});

test('what does not parse is an InputError naming where it was read', async () => {
  for (const [text, why] of [
    ['{', 'shift state the file is not valid JSON'],
    ['{"version":2}', 'shift state the file is not a version 1 record'],
    [JSON.stringify(state({ current: { uid: [{ containerID: 0, hostID: -1, size: 1 }], gid: identity.gid } })), 'shift state the file'],
  ] as const) {
    await rejects(() => parseState(text, 'the file'), InputError, why);
  }
});

test('already shifted: the root owned per the target and a finished record (or none); not while a shift is pending or for another target', () => {
  const target = mine();
  assert.ok(alreadyShifted(rootfs, target, stateDir), 'no record, owner matches: an engine shifted it');
  writeStateFile(stateDir, state());
  assert.ok(alreadyShifted(rootfs, target, stateDir));
  writeStateFile(stateDir, state({ pending: { target, steps: [], index: 0 } }));
  assert.not.ok(alreadyShifted(rootfs, target, stateDir));
  writeStateFile(stateDir, state({ current: { uid: parseIdMap(`0:${me()}:2`), gid: target.gid } }));
  assert.not.ok(alreadyShifted(rootfs, target, stateDir));
  assert.not.ok(alreadyShifted(rootfs, { uid: parseIdMap(`0:${me() + 1}:1`), gid: target.gid }, stateDir), 'root owner differs');
});

test("forgetState removes a rootfs's record and journal, before or after the rootfs is gone, and leaves others' records", () => {
  writeStateFile(stateDir, state());
  const other = join(work, 'other');
  writeStateFile(stateDir, state({ rootfs: other }));
  const paths = statePaths(stateDir, rootfs);
  writeFileSync(paths.journal, 'step 1\n');
  assert.ok(forgetState(stateDir, rootfs));
  assert.not.ok(existsSync(paths.state) || existsSync(paths.journal));
  assert.not.ok(forgetState(stateDir, rootfs), 'nothing left to remove');
  rmSync(other, { recursive: true, force: true });
  assert.ok(forgetState(stateDir, other));
  assert.not.ok(existsSync(statePaths(stateDir, other).state));
});

test.run();
