// When a create or run is the real runtime's alone, untouched: what it
// would report, it must report in its own words and exit status (runc's
// integration tests compare them), and a container it already has must
// not be prepared again.

import { existsSync } from 'node:fs';
import { findRuntimeContainer, runtimeRootFor } from '../ranges/runtime-state';
import type { RuntimeArgs } from './args';

/**
 * Why the runtime must see this create/run untouched: it prints help, or
 * it fails on its own before reading the spec (no bundle, no config.json,
 * not exactly one container id), and then it must say so in its own words
 * and exit status (runc: `JSON specification file config.json not found`,
 * exit 1). Undefined when the shim has a spec to decide on.
 */
function answersAlone(args: RuntimeArgs): string | undefined {
  if (args.options.help !== undefined) return 'help';
  if (!existsSync(args.specPath!)) return `${args.specPath} does not exist`;
  if (args.containerId === undefined && args.unknown.length === 0) return `${args.positionals.length} arguments where runc wants one container id`;
  return undefined;
}

/**
 * A create/run of an id the runtime has a container with already is the
 * runtime's to refuse (runc: `container with id exists`): preparing it
 * would take that container's range, records and rootfs mount with it when
 * the runtime fails.
 */
async function hasContainer(args: RuntimeArgs, runtime: string): Promise<string | undefined> {
  if (args.containerId === undefined) return undefined;
  const root = runtimeRootFor(runtime, args.global.root);
  return (await findRuntimeContainer([root], args.containerId)) ? `${root} has a container ${args.containerId} already` : undefined;
}

/** Why this create/run goes to the runtime untouched (answersAlone, then hasContainer), or undefined when the shim has a spec to decide on. `runtime`: the real runtime's path. */
export async function runtimeAlone(args: RuntimeArgs, runtime: string): Promise<string | undefined> {
  return answersAlone(args) ?? (await hasContainer(args, runtime));
}
