// The program of `oci-userns hook STAGE`, in a file of its own
// (dist/hook.cjs): every container start and stop runs it, so it holds the
// hook's code alone; a smaller file is less to read, compare with its code
// cache and deserialize (bin/oci-userns.ts).

import { writeSync } from 'node:fs';
import { main } from '../hooks/run';
import { programStart } from './start';

export const start = programStart((args, notePath) => main(args.slice(1), { stdin: 'process', writeError: (line) => writeSync(2, line), env: process.env, notePath }));
