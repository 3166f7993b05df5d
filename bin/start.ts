// What each program file the executable loads (bin/oci-userns.ts) exports
// as its start: stacks mapped to the sources, and an error nothing caught
// turned into the internal-error line and exit code 70.

import { mapStacksToSources } from '../lib/log/source-map';
import { INTERNAL_EXIT_CODE } from '../lib/errors';
import type { LaunchedProgram } from '../lib/sys/code-cache';

export function programStart(run: LaunchedProgram['start']): LaunchedProgram['start'] {
  return async (args, notePath) => {
    mapStacksToSources();
    try {
      return await run(args, notePath);
    } catch (error) {
      process.stderr.write(`oci-userns: internal error: ${error instanceof Error ? error.stack : String(error)}\n`);
      return INTERNAL_EXIT_CODE;
    }
  };
}
