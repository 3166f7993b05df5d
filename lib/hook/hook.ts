// The hook pipeline, from the state text the entry (hooks/run.ts) read on
// stdin to what was done: read (lib/hook/read.ts: input and facts), plan
// (lib/hook/plan.ts: pure), act (lib/hook/act.ts). The entry turns the
// outcome or the error into an exit code, one stderr line and one log line.

import type { Config } from '../config/config';
import type { Logger } from '../log/logger';
import type { Spec } from '../oci/spec';
import type { ContainerState } from '../oci/state';
import { actOnPlan, type HookResult } from './act';
import { planHook, type HookStage } from './plan';
import { readHook } from './read';

export { HOOK_STAGES, isHookStage, type HookStage } from './plan';

export interface HookInput {
  stage: HookStage;
  /** The state as the runtime wrote it on stdin. */
  stateText: string;
  config: Config;
  logger: Logger;
  /** Where /proc is; tests point it elsewhere. */
  procRoot?: string;
  /** The container's spec when the caller has it (lib/hook/read.ts ReadOptions.spec); else config.json is read. */
  spec?: Spec;
}

/** The result with what the log line says about the container. */
export type HookOutcome = HookResult & {
  containerId: string;
  status: ContainerState['status'];
  pid?: number;
  bundle: string;
};

export async function runHook(input: HookInput): Promise<HookOutcome> {
  const { config, logger, procRoot } = input;
  const { state, spec, facts } = await readHook(input);
  const plan = planHook({ stage: input.stage, state, spec, config, facts });
  const result = await actOnPlan(plan, { stateDir: config.stateDir, logger, procRoot });
  return { ...result, containerId: state.id, status: state.status, pid: state.pid, bundle: state.bundle };
}

/** The one log line of a hook run: message and fields (README "Logs"). */
export function outcomeLogLine(stage: HookStage, outcome: HookOutcome): { message: string; fields: Record<string, unknown> } {
  return {
    message: outcome.outcome === 'done' ? `${stage} done` : `${stage}: nothing to do (${outcome.reason})`,
    fields: {
      containerId: outcome.containerId,
      outcome: outcome.outcome,
      status: outcome.status,
      pid: outcome.pid,
      bundle: outcome.bundle,
      ...(outcome.outcome === 'done' ? outcome.actions : {}),
    },
  };
}
