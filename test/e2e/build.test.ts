// The build in dist/: plain files (no code in compressed strings), the
// hook's file free of the CLI's libraries, and one copy of the error classes
// per process across the files, so that an error thrown in the shift engine
// (dist/shift.cjs) is recognised by the CLI (dist/cli.cjs) with its exit code.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { accessSync, chmodSync, chownSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildProgram, buildSpec, PROGRAM, REPO, Workspace, writeBundle, writeProgramConfig } from './harness';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

/** Why this user cannot build here (the build replaces dist/ and lib/oci/generated/), or undefined. */
function buildSkipReason(): string | undefined {
  if (process.env.OCI_USERNS_PROGRAM) return undefined;
  const writable = (dir: string) => {
    try {
      accessSync(dir, constants.W_OK);
      return true;
    } catch {
      return false;
    }
  };
  const blocked = [REPO, join(REPO, 'lib', 'oci', 'generated')].filter((dir) => existsSync(dir) && !writable(dir));
  return blocked.length > 0 ? `uid ${process.getuid?.()} cannot write ${blocked.join(' and ')}, where the build writes` : undefined;
}

const test = skippedUnless(suite('build'), 'build e2e (dist)', buildSkipReason());
test.before(() => buildProgram());

test('dist holds the executable, the programs it loads, the cold files, the thread module, the error classes and their maps; no compressed code', () => {
  const dist = join(PROGRAM, '..');
  assert.equal(readdirSync(dist).filter((n) => n !== 'oci-userns-idmap').sort(), ['chown-thread.cjs', 'chown-thread.cjs.map', 'cli.cjs', 'cli.cjs.map', 'errors.cjs', 'errors.cjs.map', 'hook.cjs', 'hook.cjs.map', 'oci-userns.cjs', 'oci-userns.cjs.map', 'program.cjs', 'program.cjs.map', 'shift.cjs', 'shift.cjs.map']);
  for (const name of readdirSync(dist).filter((n) => n.endsWith('.cjs'))) {
    assert.not.match(readFileSync(join(dist, name), 'utf8'), /new Function|brotliDecompress/, name);
  }
  for (const name of ['oci-userns.cjs', 'hook.cjs', 'program.cjs']) assert.not.match(readFileSync(join(dist, name), 'utf8'), /yargs|winston|execa/, `the hook and shim paths load none of the CLI libraries (${name})`);
  assert.not.match(readFileSync(join(dist, 'hook.cjs'), 'utf8'), /prepareBundle|runShimCommand/, "the hook's file holds no shim code");
  for (const name of ['oci-userns.cjs', 'hook.cjs', 'program.cjs', 'cli.cjs', 'shift.cjs']) {
    assert.not.match(readFileSync(join(dist, name), 'utf8'), /extends UsernsError\b/, `${name} has no copy of the error classes (dist/errors.cjs holds them)`);
  }
});

test('the executable writes the code cache of its program at a hook run, compiles from it next, and leaves a directory others can write alone', async () => {
  const work = Workspace.create('oci-userns-code-cache-');
  try {
    const spec = buildSpec({ runtime: 'runc', rootfs: work.path('rootfs'), args: ['true'], userns: false });
    const bundle = writeBundle(work.path('bundle'), spec);
    const config = writeProgramConfig(work.path('etc'));
    const cache = join(work.dir, 'cache');
    const state = JSON.stringify({ ociVersion: '1.0.2', id: 'c1', status: 'creating', pid: process.pid, bundle });
    const hook = () => execa(PROGRAM, ['hook', 'createRuntime'], { input: state, env: { OCI_USERNS_CONFIG: config.path, OCI_USERNS_CODE_CACHE: cache }, reject: false });
    assert.is((await hook()).exitCode, 0);
    const written = readdirSync(cache);
    assert.equal(written.map((n) => n.split('-')[0]), ['hook'], "one cache file, the hook's");
    const inode = statSync(join(cache, written[0]!)).ino;
    const again = await hook();
    assert.equal([again.exitCode, again.stderr], [0, '']);
    assert.is(statSync(join(cache, written[0]!)).ino, inode, 'the same path again: the cache holds it, nothing written');
    assert.equal(readFileSync(config.logFile, 'utf8').split('\n').filter((l) => l.includes('nothing to do (no user namespace)')).length, 2);
    rmSync(cache, { recursive: true });
    mkdirSync(cache, { mode: 0o777 });
    chmodSync(cache, 0o777);
    assert.is((await hook()).exitCode, 0);
    assert.equal(readdirSync(cache), [], 'a directory others can write is not used');
  } finally {
    work.remove();
  }
});

test.run();

const cross = skippedUnless(suite('errors across the files of the build'), 'build e2e', rootSkipReason(['getfattr', 'setfattr']));
let work: Workspace | undefined;
cross.before(async () => {
  await buildProgram();
  work = Workspace.create('oci-userns-build-');
});
cross.after(() => work?.remove());

cross('a refusal thrown in shift.cjs exits 5 from cli.cjs, with its message (not an internal error)', async () => {
  const rootfs = join(work!.dir, 'rootfs');
  mkdirSync(rootfs);
  writeFileSync(join(rootfs, 'far'), '');
  chownSync(join(rootfs, 'far'), 99999, 0);
  const config = join(work!.dir, 'config.json');
  writeFileSync(config, JSON.stringify({ stateDir: join(work!.dir, 'state'), logFile: join(work!.dir, 'log') }));
  const result = await execa(PROGRAM, ['shift', rootfs, '--to', '300000', '--config', config], { reject: false });
  assert.is(result.exitCode, 5, result.stderr);
  assert.match(result.stderr, /^oci-userns: cannot shift .*: 1 inode\(s\) have owners or ACL entries outside the mapping: .*\/far;/);
  rmSync(rootfs, { recursive: true, force: true });
});

cross.run();
