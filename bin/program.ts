// The program behind the oci-userns executable (bin/oci-userns.ts, which
// loads it from V8's code cache: lib/sys/code-cache.ts). Dispatches before
// loading anything heavy: the hook and the runtime shim sit on every
// container's start path, so they must not pay for yargs or for the
// modules of other commands.

import { writeSync } from 'node:fs';
import { basename } from 'node:path';
import { mapStacksToSources } from '../lib/log/source-map';

async function run(args: string[], notePath: (path: string) => void): Promise<number> {
  if (args[0] === 'hook') {
    const { main } = await import('../hooks/run');
    return main(args.slice(1), { stdin: 'process', writeError: (line) => writeSync(2, line), env: process.env, notePath });
  }
  // Engines run the shim under its own name (a symlink keeps it in argv[1]).
  if (basename(process.argv[1] ?? '') === 'oci-userns-runtime') {
    const { main } = await import('../cli/runtime');
    return main(args, { notePath });
  }
  if (args[0] === 'runtime') {
    const { main } = await import('../cli/runtime');
    return main(args.slice(1), { notePath });
  }
  const { main } = await import('../cli/index');
  return main(args);
}

/** Runs the command `args` (process.argv after the script); resolves with the exit code, 70 for an internal error. */
export async function start(args: string[], notePath: (path: string) => void): Promise<number> {
  mapStacksToSources();
  try {
    return await run(args, notePath);
  } catch (error) {
    process.stderr.write(`oci-userns: internal error: ${error instanceof Error ? error.stack : String(error)}\n`);
    return 70;
  }
}
