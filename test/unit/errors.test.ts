import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError, isUsernsError, RefusedError } from '../../lib/errors';

const test = suite('isUsernsError');
test('our classes, and our errors thrown by an embedded copy of this module', () => {
  assert.ok(isUsernsError(new InputError('bad')));
  assert.is(new RefusedError('no', { hint: 'do this' }).message, 'no; do this');
  // What an error from a separately bundled copy of lib/errors.ts looks like here: another class, same brand.
  const foreign = Object.assign(new Error('refused elsewhere'), { exitCode: 5, [Symbol.for('oci-userns.UsernsError')]: true });
  assert.ok(isUsernsError(foreign));
});
test('anything else is not ours', () => {
  assert.not.ok(isUsernsError(new Error('plain')));
  assert.not.ok(isUsernsError({ exitCode: 2, message: 'duck' }));
  assert.not.ok(isUsernsError(undefined));
});
test.run();
