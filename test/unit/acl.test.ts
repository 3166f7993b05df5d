import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ACL_GROUP, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ, decodeAcl, encodeAcl, shiftAcl } from '../../lib/shift/acl';
import { InputError } from '../../lib/errors';

// The bytes `setfacl -m u:1000:rx,g:50:r` leaves on a 0644 file in system.posix_acl_access (as getfattr -e hex shows them).
const REAL = Buffer.from('0200000001000600ffffffff02000500e803000004000400ffffffff080004003200000010000500ffffffff20000400ffffffff', 'hex');

const codec = suite('POSIX ACL xattr codec');
codec('decodes the kernel layout, ids only on named entries', () => {
  assert.equal(decodeAcl(REAL), [
    { tag: ACL_USER_OBJ, perm: 6 },
    { tag: ACL_USER, perm: 5, id: 1000 },
    { tag: ACL_GROUP_OBJ, perm: 4 },
    { tag: ACL_GROUP, perm: 4, id: 50 },
    { tag: ACL_MASK, perm: 5 },
    { tag: ACL_OTHER, perm: 4 },
  ]);
});
codec('encode is the inverse of decode', () => {
  assert.equal(encodeAcl(decodeAcl(REAL)).toString('hex'), REAL.toString('hex'));
});
codec('rejects a wrong version or a cut entry', () => {
  assert.throws(() => decodeAcl(Buffer.from('01000000', 'hex')), (e: unknown) => e instanceof InputError && /version 1/.test((e as Error).message));
  assert.throws(() => decodeAcl(REAL.subarray(0, 10)), /8-byte entries/);
});
codec.run();

const shift = suite('shiftAcl maps named entries only');
shift('user and group entries move with their own functions', () => {
  const out = shiftAcl(REAL, (id) => id + 100000, (id) => id + 200000);
  assert.ok(out.changed);
  const entries = decodeAcl(out.value);
  assert.is(entries[1]!.id, 101000);
  assert.is(entries[3]!.id, 200050);
  assert.equal(entries.filter((e) => e.id === undefined).length, 4);
});
shift('unchanged when ids are already mapped, and reports unmapped ids', () => {
  const same = shiftAcl(REAL, (id) => id, (id) => id);
  assert.not.ok(same.changed);
  assert.equal(same.value.toString('hex'), REAL.toString('hex'));
  const partial = shiftAcl(REAL, () => undefined, (id) => id);
  assert.equal(partial.unmapped, [1000]);
});
shift.run();
