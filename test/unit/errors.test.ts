import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError, isUsernsError, RefusedError } from '../../lib/errors';

const test = suite('isUsernsError');
test('our classes, with the hint appended to the message', () => {
  assert.ok(isUsernsError(new InputError('bad')));
  assert.is(new RefusedError('no', { hint: 'do this' }).message, 'no; do this');
});
test('anything else is not ours', () => {
  assert.not.ok(isUsernsError(new Error('plain')));
  assert.not.ok(isUsernsError({ exitCode: 2, message: 'duck' }));
  assert.not.ok(isUsernsError(Object.assign(new Error('branded'), { exitCode: 5, [Symbol.for('oci-userns.UsernsError')]: true })));
  assert.not.ok(isUsernsError(undefined));
});
test.run();
