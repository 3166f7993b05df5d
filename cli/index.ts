// The command line (everything but the hook path): yargs lives here and
// only here. Each command module is a thin adapter over the library.

import yargs from 'yargs';
import { INTERNAL_EXIT_CODE, isUsernsError } from '../lib/errors';
import { closeLoggers, VERSION } from './context';
import alloc from './alloc';
import doctor from './doctor';
import gc from './gc';
import ranges from './ranges';
import release from './release';
import shift from './shift';
import validate from './validate';

const HOOK_USAGE = 'hook <prestart|createRuntime|poststop>';

export async function main(argv: string[]): Promise<number> {
  let failure: { message: string; code: number } | undefined;
  const parser = yargs(argv)
    .scriptName('oci-userns')
    .usage('$0: run systemd containers in Linux user namespaces (OCI hook and runtime shim)')
    .option('config', { type: 'string', global: true, describe: 'config file (default /etc/containers/oci-userns.json, or $OCI_USERNS_CONFIG)' })
    .option('json', { type: 'boolean', global: true, describe: 'print machine-readable JSON' })
    .command(HOOK_USAGE, 'OCI hook entry for runtimes: reads the state on stdin (see README)')
    .command('runtime [args..]', 'OCI runtime shim in front of runc/crun (also installed as oci-userns-runtime; see README)')
    .command([...shift])
    .command([alloc, release, ranges, gc])
    .command([...validate])
    .command([...doctor])
    .demandCommand(1, 'name a command; see --help')
    .strict()
    .version(VERSION)
    .help()
    .wrap(Math.min(100, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((message, error) => {
      if (error) throw error;
      failure = { message, code: 2 };
    });
  try {
    await parser.parseAsync();
  } catch (error) {
    if (isUsernsError(error)) failure = { message: error.message, code: error.exitCode };
    else failure = { message: `internal error: ${error instanceof Error ? error.stack : String(error)}`, code: INTERNAL_EXIT_CODE };
  } finally {
    await closeLoggers();
  }
  if (failure) {
    process.stderr.write(`oci-userns: ${failure.message}\n`);
    return failure.code;
  }
  return 0;
}
