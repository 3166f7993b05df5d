// `oci-userns validate --kind KIND FILE`: checks a document against one of
// the bundled schemas, for users writing hooks.d files or config files and
// for tests.

import { readFile } from 'node:fs/promises';
import type { CommandModule } from 'yargs';
import { InputError, systemError } from '../lib/errors';
import { parseValidated } from '../lib/oci/json';
import { SCHEMA_KINDS, type SchemaKind } from '../lib/oci/schemas';
import { print, printJson, type GlobalArgs } from './context';

interface ValidateArgs extends GlobalArgs {
  kind: SchemaKind;
  file: string;
}

const validate: CommandModule<GlobalArgs, ValidateArgs> = {
  command: 'validate <file>',
  describe: 'Check a state, config.json, hooks.d file or oci-userns config file against its schema',
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'file to check ("-" for stdin)' })
      .option('kind', { choices: SCHEMA_KINDS, demandOption: true, describe: 'what the file is' }) as never,
  handler: async (args) => {
    let text: string;
    try {
      text = args.file === '-' ? await readStdin() : await readFile(args.file, 'utf8');
    } catch (error) {
      throw systemError('cannot read', args.file, error);
    }
    try {
      parseValidated(text, args.kind, args.file);
    } catch (error) {
      if (args.json && error instanceof InputError) printJson({ file: args.file, kind: args.kind, valid: false, error: error.message });
      throw error;
    }
    if (args.json) printJson({ file: args.file, kind: args.kind, valid: true });
    else print(`${args.file}: valid ${args.kind}`);
  },
};

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export default [validate];
