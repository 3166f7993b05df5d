// Entry of `oci-userns hook <stage>`, the path runtimes call. Kept free of
// yargs and of every module the hook does not need, because each container
// start pays for what is loaded here.

import { loadConfig } from '../lib/config/config-file';
import { DEFAULTS, type Config } from '../lib/config/config';
import { INTERNAL_EXIT_CODE, InputError, isUsernsError } from '../lib/errors';
import { isHookStage, HOOK_STAGES, outcomeLogLine, runHook, type HookOutcome } from '../lib/hook/hook';
import { openHookLogger } from '../lib/log/hook-log';
import type { FileLogger } from '../lib/log/log-types';
import { stopwatch } from '../lib/log/stopwatch';
import { readStdinBounded, readStreamBounded } from '../lib/oci/input';

export interface HookIo {
  /** Where the runtime's state comes from: 'process' for the process's stdin, or a stream (tests). */
  stdin: 'process' | NodeJS.ReadableStream;
  /** Writes the one error line; the entry passes a direct write to fd 2 (process.stderr costs 3 ms to create). */
  writeError: (line: string) => void;
  env: NodeJS.ProcessEnv;
  /** Told the path the run took ('hook STAGE OUTCOME'), for the code cache (lib/sys/code-cache.ts). */
  notePath?: (path: string) => void;
}

interface HookArgs {
  stage: string;
  configPath?: string;
}

const USAGE = `usage: oci-userns hook <${HOOK_STAGES.join('|')}> [--config FILE]`;

function parseHookArgs(args: string[]): HookArgs {
  let stage: string | undefined;
  let configPath: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--config') {
      configPath = args[++i];
      if (configPath === undefined) throw new InputError(`--config needs a file; ${USAGE}`);
    } else if (arg.startsWith('--config=')) {
      configPath = arg.slice('--config='.length);
    } else if (arg.startsWith('-') || stage !== undefined) {
      throw new InputError(`unexpected argument '${arg}'; ${USAGE}`);
    } else {
      stage = arg;
    }
  }
  if (stage === undefined) throw new InputError(`missing stage; ${USAGE}`);
  return { stage, configPath };
}

/** The state text, bounded in size and time (config.limits); process.stdin only when fd 0 cannot be reopened. */
async function readState(stdin: HookIo['stdin'], config: Config): Promise<string> {
  const limits = { maxBytes: config.limits.inputBytes, timeoutMs: config.limits.stdinTimeoutMs, what: 'state on stdin' };
  const raw = stdin === 'process' ? ((await readStdinBounded(limits)) ?? (await readStreamBounded(process.stdin, limits))) : await readStreamBounded(stdin, limits);
  return raw.toString('utf8');
}

export async function main(args: string[], io: HookIo): Promise<number> {
  const elapsed = stopwatch();
  let stage = args.find((a) => !a.startsWith('-')) ?? 'hook';
  let config: Config | undefined;
  let logger: FileLogger | undefined;
  try {
    const parsed = parseHookArgs(args);
    stage = parsed.stage;
    if (!isHookStage(stage)) throw new InputError(`unknown stage '${stage}'; ${USAGE}`);
    config = await loadConfig({ path: parsed.configPath, env: io.env });
    logger = openHookLogger({ file: config.logFile, level: config.logLevel, fields: { stage } });
    const stateText = await readState(io.stdin, config);
    const outcome: HookOutcome = await runHook({ stage, stateText, config, logger });
    const line = outcomeLogLine(stage, outcome);
    logger.info(line.message, { ...line.fields, durationMs: elapsed() });
    io.notePath?.(`hook ${stage} ${outcome.outcome}`);
    return 0;
  } catch (error) {
    const expected = isUsernsError(error);
    const reason = expected ? error.message : `internal error: ${error instanceof Error ? error.message : String(error)}`;
    const line = `oci-userns: ${stage}: ${reason}`;
    io.writeError(`${line}\n`);
    // Without a valid config there is no configured log; the environment's
    // or the default log file still gets the line crun would have dropped.
    logger ??= openHookLogger({ file: io.env.OCI_USERNS_LOG_FILE ?? DEFAULTS.logFile, level: 'error', fields: { stage } });
    logger.error(line, {
      containerId: expected ? error.containerId : undefined,
      outcome: 'error',
      error: expected ? error.name : 'InternalError',
      path: expected ? error.path : undefined,
      stack: expected ? undefined : (error as Error)?.stack,
      durationMs: elapsed(),
    });
    return expected ? error.exitCode : INTERNAL_EXIT_CODE;
  } finally {
    await logger?.close();
  }
}
