// The oci-userns executable: runs the program file for the command
// (dist/hook.cjs for `hook`, which every container start runs, else
// dist/program.cjs: bin/hook.ts, bin/program.ts) from V8's code cache when
// root has one for its exact bytes (lib/sys/code-cache.ts), and writes the
// cache at exit when this run took a path the cache does not hold yet.

import { join } from 'node:path';
import { loadWithCodeCache, trustedCacheDir } from '../lib/sys/code-cache';

const args = process.argv.slice(2);
const uid = process.geteuid?.() ?? 0;
// The program files sit beside this one, so this file's require resolves what they require.
const file = join(import.meta.dirname, args[0] === 'hook' ? 'hook.cjs' : 'program.cjs');
const program = loadWithCodeCache({ file, dir: trustedCacheDir(process.env, uid), uid, require });
process.on('exit', program.atExit);
program.exports.start(args, program.notePath).then((code) => {
  process.exitCode = code;
});
