import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';

const test = suite('stacks of a bundle name the sources');
let dir = '';
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-source-map-'));
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('a frame in a .cjs with a map beside it names the .ts line; without the map the bundle position stays', async () => {
  const source = join(dir, 'thrower.ts');
  writeFileSync(
    source,
    `import { mapStacksToSources } from ${JSON.stringify(join(import.meta.dirname, '../../lib/log/source-map'))};
mapStacksToSources();
function thrower(): never {
  throw new Error('boom');
}
try { thrower(); } catch (error) { process.stdout.write((error as Error).stack ?? ''); }
`,
  );
  const outfile = join(dir, 'thrower.cjs');
  await build({ entryPoints: [source], outfile, bundle: true, platform: 'node', format: 'cjs', sourcemap: true, sourcesContent: false, minifyWhitespace: true, logLevel: 'silent' });
  const mapped = spawnSync(process.execPath, [outfile], { encoding: 'utf8' }).stdout;
  assert.match(mapped, /^Error: boom\n {4}at thrower \(.*thrower\.ts:4:9\)/);
  rmSync(`${outfile}.map`);
  assert.match(spawnSync(process.execPath, [outfile], { encoding: 'utf8' }).stdout, /at thrower \(.*thrower\.cjs:1:\d+\)/);
});

test.run();
