// The one "this must fail, with this error" assertion of the test suites.

import * as assert from 'uvu/assert';

type ErrorClass<E extends Error> = abstract new (...args: never[]) => E;

/**
 * Awaits `action` (a promise, or a function that throws or returns one) and
 * asserts that it fails with an instance of `type` whose message matches
 * `pattern`. Returns the error for further checks (its containerId, path).
 * An action that succeeds fails the test, naming what was expected.
 */
export async function rejects<E extends Error>(action: Promise<unknown> | (() => unknown), type: ErrorClass<E>, pattern: RegExp | string = /./): Promise<E> {
  let failure: unknown;
  try {
    await (typeof action === 'function' ? action() : action);
  } catch (error) {
    failure = error;
  }
  if (failure === undefined) assert.unreachable(`expected a ${type.name} matching ${pattern}, but it succeeded`);
  assert.instance(failure, type);
  assert.match((failure as Error).message, pattern);
  return failure as E;
}
