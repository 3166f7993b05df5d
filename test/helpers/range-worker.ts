// A separate process for the registry concurrency tests (bundled by the
// test with esbuild so that 64 of them start quickly). Modes:
//   alloc JSON       wait for a line on stdin, allocate one range, print the outcome as JSON
//   alloc-loop JSON  allocate ID-0, ID-1, ... printing each, until killed
//   hold JSON        take the registry lock through an update, print "held", never finish
import { allocateRange } from '../../lib/ranges/ranges';
import { updateRegistry } from '../../lib/ranges/registry';
import type { PoolConfig } from '../../lib/config/config';

interface Args {
  stateDir: string;
  pool: PoolConfig;
  passwdFile: string;
  id: string;
}

const [mode, json] = process.argv.slice(2);
const args = JSON.parse(json!) as Args;
const alloc = (id: string) => allocateRange({ stateDir: args.stateDir, pool: args.pool, passwdFile: args.passwdFile, storageRoots: [], id, source: 'cli', lockTimeoutMs: 60_000 });

if (mode === 'alloc') {
  process.stdin.once('data', async () => {
    const started = performance.now();
    try {
      const entry = await alloc(args.id);
      process.stdout.write(`${JSON.stringify({ ok: true, entry, ms: performance.now() - started })}\n`);
    } catch (error) {
      process.stdout.write(`${JSON.stringify({ ok: false, name: (error as Error).name, message: (error as Error).message })}\n`);
      process.exitCode = 1;
    }
    process.stdin.destroy();
  });
} else if (mode === 'alloc-loop') {
  for (let i = 0; ; i++) {
    await alloc(`${args.id}-${i}`);
    process.stdout.write(`${args.id}-${i}\n`);
  }
} else if (mode === 'hold') {
  await updateRegistry({ stateDir: args.stateDir }, () => {
    process.stdout.write('held\n');
    return new Promise<never>(() => {});
  });
}
