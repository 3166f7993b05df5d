// Parsing JSON documents that come from outside, with errors that say which
// document and what is wrong with it (empty, truncated, not JSON, not an object).

import { InputError, type ErrorContext } from '../errors';
import { schemaProblem, type SchemaKind } from './schemas';

export function parseJsonObject(text: string, what: string, context: ErrorContext = {}): Record<string, unknown> {
  if (text.trim() === '') throw new InputError(`${what} is empty`, context);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    // V8 reports an early end either as such or as an error at the last position.
    const position = /position (\d+)/.exec((error as Error).message);
    const truncated = /end of (JSON )?input/i.test((error as Error).message) || (position !== null && Number(position[1]) >= text.trimEnd().length);
    const reason = truncated ? 'is truncated JSON' : `is not valid JSON (${(error as Error).message})`;
    throw new InputError(`${what} ${reason}`, { ...context, cause: error });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InputError(`${what} must be a JSON object`, context);
  }
  return value as Record<string, unknown>;
}

/** Parses and validates a document against one of the bundled schemas. */
export function parseValidated<T>(text: string, kind: SchemaKind, what: string, context: ErrorContext = {}): T {
  const value = parseJsonObject(text, what, context);
  const problem = schemaProblem(kind, value);
  if (problem) throw new InputError(`${what}: ${problem}`, context);
  return value as T;
}
