// The shift and unshift commands on their own, for bench:shift while the
// bundled program (dist/oci-userns.cjs) does not register them yet.
import yargs from 'yargs';
import { isUsernsError } from '../lib/errors';
import { closeLoggers } from '../cli/context';
import shift from '../cli/shift';

yargs(process.argv.slice(2))
  .option('config', { type: 'string', global: true })
  .option('json', { type: 'boolean', global: true })
  .command([...shift])
  .strict()
  .parseAsync()
  .catch((error: unknown) => {
    process.stderr.write(`oci-userns: ${isUsernsError(error) ? error.message : String(error)}\n`);
    process.exitCode = isUsernsError(error) ? error.exitCode : 70;
  })
  .finally(() => closeLoggers());
