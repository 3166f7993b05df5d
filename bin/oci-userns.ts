// The oci-userns executable. Dispatches before loading anything heavy: the
// hook and the runtime shim sit on every container's start path, so they
// must not pay for yargs or for the modules of other commands.

import { writeSync } from 'node:fs';
import { basename } from 'node:path';
import { mapStacksToSources } from '../lib/log/source-map';

mapStacksToSources();

const args = process.argv.slice(2);

async function run(): Promise<number> {
  if (args[0] === 'hook') {
    const { main } = await import('../hooks/run');
    return main(args.slice(1), { stdin: 'process', writeError: (line) => writeSync(2, line), env: process.env });
  }
  // Engines run the shim under its own name (a symlink keeps it in argv[1]).
  if (basename(process.argv[1] ?? '') === 'oci-userns-runtime') {
    const { main } = await import('../cli/runtime');
    return main(args);
  }
  if (args[0] === 'runtime') {
    const { main } = await import('../cli/runtime');
    return main(args.slice(1));
  }
  const { main } = await import('../cli/index');
  return main(args);
}

run().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`oci-userns: internal error: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 70;
  },
);
