// Validation against the bundled JSON schemas. The validators are compiled
// by scripts/build.mjs ahead of time; this module only runs them and turns
// ajv's first error into one readable sentence.

import type { ErrorObject, ValidateFunction } from 'ajv';
import { validateConfig, validateConfigFile, validateHooks, validateState } from './generated/validators';

export type SchemaKind = 'state' | 'config' | 'hooks' | 'config-file';

export const SCHEMA_KINDS: readonly SchemaKind[] = ['state', 'config', 'hooks', 'config-file'];

const validators: Record<SchemaKind, ValidateFunction> = {
  state: validateState,
  config: validateConfig,
  hooks: validateHooks,
  'config-file': validateConfigFile,
};

/** Where in the document an error is, as a dotted key path ("linux.uidMappings[0].size"). */
function keyPath(instancePath: string, extra?: string): string {
  const parts = instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  return parts.reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '');
}

export function describeSchemaError(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties':
      return `unknown key '${keyPath(error.instancePath, String(params.additionalProperty))}'`;
    case 'required':
      return `missing required key '${keyPath(error.instancePath, String(params.missingProperty))}'`;
    case 'enum':
      return `'${keyPath(error.instancePath)}' must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return `'${keyPath(error.instancePath)}' must be ${JSON.stringify(params.allowedValue)}`;
    default: {
      const where = keyPath(error.instancePath);
      return where ? `'${where}' ${error.message}` : `the document ${error.message}`;
    }
  }
}

/** Validates a parsed document; returns undefined when valid, else one sentence. */
export function schemaProblem(kind: SchemaKind, value: unknown): string | undefined {
  const validate = validators[kind];
  if (validate(value)) return undefined;
  const errors = validate.errors ?? [];
  // The if/then of the state schema reports the inner error and then an
  // uninformative "must match then schema"; the first error is the useful one.
  const first = errors[0];
  if (!first) return 'invalid';
  const problem = describeSchemaError(first);
  // runtime-spec before 1.0.0 named the bundle 'bundlePath': say so rather than leave the reader to guess.
  const renamed = kind === 'state' && first.keyword === 'required' && (first.params as { missingProperty?: string }).missingProperty === 'bundle' && typeof value === 'object' && value !== null && 'bundlePath' in value;
  return renamed ? `${problem} (the state has 'bundlePath', its name before runtime-spec 1.0.0: the runtime is older than the spec this hook reads)` : problem;
}
