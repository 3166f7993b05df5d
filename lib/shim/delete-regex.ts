// crun's `delete --regex RE` deletes every container whose id matches RE,
// a POSIX extended regular expression (regcomp(3), which JavaScript's
// RegExp does not read the same way): the shim does not guess which ids it
// names, it compares the containers the runtime knows before and after, so
// each one deleted gives back its range and private rootfs mount as a
// plain delete does, and a container created meanwhile is never taken for
// one deleted.

import { DEFAULT_RUNTIME_ROOTS, listRuntimeContainers } from '../ranges/runtime-state';
import type { RuntimeArgs } from './args';

/** Whether this call is a delete by regular expression. */
export const isRegexDelete = (args: RuntimeArgs) => args.command === 'delete' && args.options.regex !== undefined;

/** The runtime's state roots for this call: its --root, else runc's and crun's defaults. */
function roots(args: RuntimeArgs): readonly string[] {
  return typeof args.global.root === 'string' ? [args.global.root] : DEFAULT_RUNTIME_ROOTS;
}

/** The ids of the containers the runtime knows now. Throws SystemError when a state root cannot be listed. */
export async function runtimeIds(args: RuntimeArgs): Promise<Set<string>> {
  return new Set((await listRuntimeContainers(roots(args))).map((c) => c.id));
}

/** Of the ids the runtime knew before (runtimeIds), those it no longer knows. */
export async function deletedSince(args: RuntimeArgs, before: ReadonlySet<string>): Promise<string[]> {
  const now = await runtimeIds(args);
  return [...before].filter((id) => !now.has(id));
}
