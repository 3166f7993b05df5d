// The oci-userns executable: runs the program (bin/program.ts, built to
// dist/program.cjs beside this file) from V8's code cache when root has
// one for its exact bytes (lib/sys/code-cache.ts), and writes the cache at
// exit when this run took a path the cache does not hold yet.

import { join } from 'node:path';
import { loadWithCodeCache, trustedCacheDir } from '../lib/sys/code-cache';

const uid = process.geteuid?.() ?? 0;
const program = loadWithCodeCache({ file: join(import.meta.dirname, 'program.cjs'), dir: trustedCacheDir(process.env, uid), uid });
process.on('exit', program.atExit);
program.exports.start(process.argv.slice(2), program.notePath).then((code) => {
  process.exitCode = code;
});
