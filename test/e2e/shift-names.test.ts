// Names that are not UTF-8 (a latin1 "café", a lone 0xff): Node decodes
// them lossily, so the walker must carry their bytes. The tree is large
// enough that the walker thread and the calling thread both walk it, and
// names that are not UTF-8 sit in every directory, on setuid files, on
// files with ACLs and capabilities, and on directories.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ACL_GROUP, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ, decodeAcl, encodeAcl } from '../../lib/shift/acl';
import { parseIdMap } from '../../lib/oci/idmap';
import { escapeBytes, keyOfBytes } from '../../lib/sys/path-key';
import { shiftTree, unshiftTree } from '../../lib/shift/shift';
import { parseDump } from '../../lib/shift/xattr';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

const R = parseIdMap('0:100000:65536');

const bytes = (...parts: Array<string | number[] | Buffer>) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
const CAFE = bytes('caf', [0xe9]);
const FF = bytes('x', [0xff], 'y');
/** An access ACL granting user 1000 r-x and group 50 r--. */
const accessAcl = () =>
  encodeAcl([
    { tag: ACL_USER_OBJ, perm: 7 },
    { tag: ACL_USER, perm: 5, id: 1000 },
    { tag: ACL_GROUP_OBJ, perm: 5 },
    { tag: ACL_GROUP, perm: 4, id: 50 },
    { tag: ACL_MASK, perm: 5 },
    { tag: ACL_OTHER, perm: 4 },
  ]);

/** VFS v2 file capabilities: cap_net_raw (bit 13) permitted and effective. */
function netRawCap(): Buffer {
  const buf = Buffer.alloc(20);
  buf.writeUInt32LE(0x02000001, 0);
  buf.writeUInt32LE(1 << 13, 4);
  return buf;
}

const test = skippedUnless(suite('shift of names that are not UTF-8'), 'shift-names', rootSkipReason(['setfattr', 'getfattr']));
let work = '';
let root: Buffer = Buffer.alloc(0);

function setXattr(path: Buffer, name: string, value: Buffer): void {
  execFileSync('setfattr', ['-h', '--restore=-'], { input: `# file: ${escapeBytes(path)}\n${name}=0x${value.toString('hex')}\n\n` });
}

/** Every inode below root by its bytes. */
function inodes(dir: Buffer, out = new Map<string, { uid: number; gid: number; mode: number }>()): Map<string, { uid: number; gid: number; mode: number }> {
  for (const name of readdirSync(dir, { encoding: 'buffer' })) {
    const path = Buffer.concat([dir, Buffer.from('/'), name]);
    const st = lstatSync(path);
    out.set(keyOfBytes(path), { uid: st.uid, gid: st.gid, mode: st.mode });
    if (st.isDirectory()) inodes(path, out);
  }
  return out;
}

test.before(() => {
  work = mkdtempSync(join(tmpdir(), 'oci-userns-names-'));
  chmodSync(work, 0o755);
  root = bytes(join(work, 'rootfs'));
  mkdirSync(root);
  for (let d = 0; d < 24; d++) {
    const dir = Buffer.concat([root, bytes('/'), d % 3 === 0 ? bytes(`d${d}-`, CAFE) : bytes(`d${d}`)]);
    mkdirSync(dir);
    chownSync(dir, 1000, 1000);
    for (let f = 0; f < 150; f++) {
      const file = Buffer.concat([dir, bytes('/'), f % 10 === 0 ? bytes(`f${f}-`, FF) : bytes(`f${f}`)]);
      writeFileSync(file, '');
      chownSync(file, f % 3, f % 5);
    }
  }
  const suid = Buffer.concat([root, bytes('/su-', CAFE)]);
  writeFileSync(suid, '');
  chmodSync(suid, 0o4755);
  const acl = Buffer.concat([root, bytes('/acl-', FF)]);
  writeFileSync(acl, '');
  const cap = Buffer.concat([root, bytes('/d0-', CAFE, '/ping-', CAFE)]);
  writeFileSync(cap, '');
  chmodSync(cap, 0o755);
  setXattr(acl, 'system.posix_acl_access', accessAcl());
  setXattr(cap, 'security.capability', netRawCap());
});
test.after(() => rmSync(work, { recursive: true, force: true }));

test('every inode is shifted, setuid bits, ACLs and caps kept; unshift restores it', async () => {
  const rootPath = root.toString('utf8');
  const stateDir = join(work, 'state');
  const before = inodes(root);
  assert.ok([...before.keys()].filter((k) => k.startsWith('\0')).length > 300, 'the tree holds many names that are not UTF-8');

  const result = await shiftTree({ rootfs: rootPath, uidMap: R, gidMap: R, unmapped: 'error', stateDir, batchSize: 64 });
  assert.is(result.inodes, before.size + 1);
  const after = inodes(root);
  assert.equal([...after.keys()].sort(), [...before.keys()].sort());
  for (const [key, b] of before) {
    const a = after.get(key)!;
    assert.equal([a.uid, a.gid, a.mode], [b.uid + 100000, b.gid + 100000, b.mode], JSON.stringify(key));
  }
  const dump = parseDump(execFileSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '^(security\\.capability|system\\.posix_acl_access)$', '-e', 'hex', '--absolute-names', rootPath]).toString('latin1'));
  const acl = dump.get(keyOfBytes(Buffer.concat([root, bytes('/acl-', FF)])))?.get('system.posix_acl_access');
  assert.ok(acl, 'the ACL is still there');
  assert.equal(
    decodeAcl(acl!).filter((e) => e.id !== undefined).map((e) => e.id),
    [101000, 100050],
  );
  const cap = dump.get(keyOfBytes(Buffer.concat([root, bytes('/d0-', CAFE, '/ping-', CAFE)])))?.get('security.capability');
  assert.ok(cap, 'the capability survived the chown');
  assert.is(cap!.readUInt32LE(0) >>> 24, 3, 'written back as VFS v3');
  assert.is(cap!.readUInt32LE(20), 100000, 'rootid is the host uid of container root');

  await unshiftTree({ rootfs: rootPath, unmapped: 'error', stateDir });
  const back = inodes(root);
  for (const [key, b] of before) assert.equal(back.get(key), b, JSON.stringify(key));
});

test.run();
