// The program behind the oci-userns executable for every command but the
// hook (bin/hook.ts): the runtime shim, then the CLI. Dispatches before
// loading anything heavy: the shim sits on a container's start path, so it
// must not pay for yargs or for the modules of other commands.

import { basename } from 'node:path';
import { programStart } from './start';

export const start = programStart(async (args, notePath) => {
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
});
