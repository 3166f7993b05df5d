// crun's `delete --regex RE` deletes every container whose id matches RE,
// a POSIX extended regular expression (regcomp(3), which JavaScript's
// RegExp does not read the same way): the shim does not guess which ids it
// names, it compares the containers the runtime knows before and after, so
// each one deleted gives back its range and private rootfs mount as a
// plain delete does, and a container created meanwhile is never taken for
// one deleted.

import { isUsernsError } from '../errors';
import type { Logger } from '../log/logger';
import { listRuntimeContainers, runtimeRootFor } from '../ranges/runtime-state';
import type { RuntimeArgs } from './args';

/** Whether this call is a delete by regular expression. */
export const isRegexDelete = (args: RuntimeArgs) => args.command === 'delete' && args.options.regex !== undefined;

/**
 * The ids of the containers the runtime knows now; undefined (logged) when
 * a state root cannot be listed (a runtime root the shim may not read):
 * the delete itself must not fail for it, and the ranges of what it
 * deletes are then dropped by the next allocation (their processes are
 * gone).
 */
export async function runtimeIds(args: RuntimeArgs, runtime: string, logger: Logger): Promise<Set<string> | undefined> {
  try {
    return new Set((await listRuntimeContainers([runtimeRootFor(runtime, args.global.root)])).map((c) => c.id));
  } catch (error) {
    if (!isUsernsError(error)) throw error;
    logger.warn(`delete --regex: the containers it deletes keep their ranges until the next allocation: ${error.message}`, { command: args.command });
    return undefined;
  }
}

/** Of the ids the runtime knew before (runtimeIds), those it no longer knows; none when it cannot tell. */
export async function deletedSince(args: RuntimeArgs, runtime: string, before: ReadonlySet<string>, logger: Logger): Promise<string[]> {
  const now = await runtimeIds(args, runtime, logger);
  return now === undefined ? [] : [...before].filter((id) => !now.has(id));
}
