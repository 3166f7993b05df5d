import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheFileFor, CODE_CACHE_ENV, loadWithCodeCache, readCodeCache, trustedCacheDir, writeCodeCache } from '../../lib/sys/code-cache';

const uid = process.geteuid?.() ?? 0;
let dir = '';

const dirs = suite('code cache: the directory');
dirs.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-code-cache-'));
});
dirs.after.each(() => rmSync(dir, { recursive: true, force: true }));

dirs('made 0700 when missing; used when only this user can change it', () => {
  const cache = join(dir, 'cache');
  assert.is(trustedCacheDir({ [CODE_CACHE_ENV]: cache }, uid), cache);
  assert.is(statSync(cache).mode & 0o777, 0o700);
  chmodSync(cache, 0o755);
  assert.is(trustedCacheDir({ [CODE_CACHE_ENV]: cache }, uid), cache, 'readable by others is fine: the source is not secret');
});

dirs('not used: off, relative, writable by group or others, another owner, a symlink, cannot be made', () => {
  const cache = join(dir, 'cache');
  mkdirSync(cache, { mode: 0o700 });
  assert.is(trustedCacheDir({ [CODE_CACHE_ENV]: 'off' }, uid), undefined);
  assert.is(trustedCacheDir({ [CODE_CACHE_ENV]: 'cache' }, uid), undefined);
  for (const mode of [0o770, 0o707, 0o1777]) {
    chmodSync(cache, mode);
    assert.is(trustedCacheDir({ [CODE_CACHE_ENV]: cache }, uid), undefined, mode.toString(8));
  }
  chmodSync(cache, 0o700);
  assert.is(trustedCacheDir({ [CODE_CACHE_ENV]: cache }, uid + 1), undefined, 'owned by another user');
  symlinkSync(cache, join(dir, 'link'));
  assert.is(trustedCacheDir({ [CODE_CACHE_ENV]: join(dir, 'link') }, uid), undefined);
  assert.is(trustedCacheDir({ [CODE_CACHE_ENV]: join(dir, 'no', 'parent') }, uid), undefined);
});

dirs.run();

const files = suite('code cache: the file');
files.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-code-cache-'));
});
files.after.each(() => rmSync(dir, { recursive: true, force: true }));

const source = Buffer.from('module.exports = 1;\n');

files('read back only for the very bytes it was made from, owned by this user alone, not through a symlink', () => {
  const path = join(dir, 'program.cache');
  writeCodeCache(path, { source, paths: new Set(['b', 'a']), data: Buffer.from('v8 data') });
  assert.is(statSync(path).mode & 0o777, 0o600);
  const read = readCodeCache(path, source, uid);
  assert.equal([read.data?.toString(), [...read.paths]], ['v8 data', ['a', 'b']]);
  assert.is(readCodeCache(path, Buffer.from('module.exports = 2;\n'), uid).data, undefined, 'another source of the same length');
  assert.is(readCodeCache(path, source, uid + 1).data, undefined, 'another owner');
  chmodSync(path, 0o620);
  assert.is(readCodeCache(path, source, uid).data, undefined, 'group-writable');
  chmodSync(path, 0o600);
  symlinkSync(path, join(dir, 'link'));
  assert.is(readCodeCache(join(dir, 'link'), source, uid).data, undefined, 'a symlink');
  writeFileSync(path, readFileSync(path).subarray(0, 30));
  assert.is(readCodeCache(path, source, uid).data, undefined, 'cut short');
  assert.is(readCodeCache(join(dir, 'none'), source, uid).data, undefined);
});

files.run();

const load = suite('code cache: loading a program');
let program = '';
load.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-code-cache-'));
  mkdirSync(join(dir, 'cache'), { mode: 0o700 });
  program = join(dir, 'program.cjs');
  writeFileSync(join(dir, 'dep.cjs'), 'module.exports = "dep";\n');
  writeFileSync(
    program,
    [
      'const dep = require("./dep.cjs");',
      'exports.start = async (args) => ({ dep, args, filename: __filename, dirname: __dirname, line: new Error().stack.split("\\n")[1] });',
      '',
    ].join('\n'),
  );
});
load.after.each(() => rmSync(dir, { recursive: true, force: true }));

const started = async (loaded: ReturnType<typeof loadWithCodeCache>) => (await loaded.exports.start(['x'], () => undefined)) as unknown as Record<string, unknown>;

load('runs the file as CommonJS (require beside it, __filename, positions in stacks as in the file)', async () => {
  const result = await started(loadWithCodeCache({ file: program, dir: undefined, uid }));
  assert.equal({ ...result, line: undefined }, { dep: 'dep', args: ['x'], filename: program, dirname: dir, line: undefined });
  assert.match(String(result.line), `${program}:2:`);
});

load('written at exit when the run took a path the cache lacks; then compiled from it; written again only for a new path', () => {
  const cacheDir = join(dir, 'cache');
  const path = cacheFileFor(cacheDir, program);
  const first = loadWithCodeCache({ file: program, dir: cacheDir, uid });
  assert.is(first.cached, false);
  first.atExit();
  assert.equal(readdirSync(cacheDir), [], 'no path noted: nothing written');
  first.notePath('hook createRuntime not-applicable');
  first.atExit();
  assert.equal([...readCodeCache(path, readFileSync(program), uid).paths], ['hook createRuntime not-applicable']);

  const second = loadWithCodeCache({ file: program, dir: cacheDir, uid });
  assert.is(second.cached, true);
  const written = statSync(path).ino;
  second.notePath('hook createRuntime not-applicable');
  second.atExit();
  assert.is(statSync(path).ino, written, 'a path the cache holds: not written again');
  second.notePath('runtime run prepared');
  second.atExit();
  assert.equal([...readCodeCache(path, readFileSync(program), uid).paths], ['hook createRuntime not-applicable', 'runtime run prepared']);
});

load('a cache of other bytes is not used (same length), and is replaced at exit', () => {
  const cacheDir = join(dir, 'cache');
  const loaded = loadWithCodeCache({ file: program, dir: cacheDir, uid });
  loaded.notePath('a');
  loaded.atExit();
  const before = readFileSync(program, 'utf8');
  writeFileSync(program, before.replace('line:', 'LINE:'));
  assert.is(readFileSync(program).length, Buffer.byteLength(before));
  const changed = loadWithCodeCache({ file: program, dir: cacheDir, uid });
  assert.is(changed.cached, false);
  changed.notePath('a');
  changed.atExit();
  assert.is(loadWithCodeCache({ file: program, dir: cacheDir, uid }).cached, true);
});

// V8 checks a code cache's version, flags, source length and payload length,
// but in a release build not its checksum (--verify-snapshot-checksum is a
// debug default): a changed byte in the bytecode runs or aborts the process
// (SIGTRAP, 'unreachable code'), at every start until the file is removed.
load('a cache whose V8 data changed is not used: the program compiles and runs, no abort', () => {
  const cacheDir = join(dir, 'cache');
  const many = Array.from({ length: 200 }, (_, i) => `exports.f${i} = (a) => [a, ${i}, String(a).repeat(${i % 7})].join("-");`).join('\n');
  writeFileSync(program, `${many}\nexports.start = async () => Object.keys(exports).map((k) => k === "start" ? "" : exports[k](k)).join("").length;\n`);
  const made = loadWithCodeCache({ file: program, dir: cacheDir, uid });
  made.notePath('a');
  void made.exports.start([], () => undefined);
  made.atExit();
  const path = cacheFileFor(cacheDir, program);
  const whole = readFileSync(path);
  const dataStart = whole.length - (readCodeCache(path, readFileSync(program), uid).data?.length ?? 0);
  const child = [
    `const { loadWithCodeCache } = require(${JSON.stringify(join(import.meta.dirname, '../../lib/sys/code-cache.ts'))});`,
    `const l = loadWithCodeCache({ file: ${JSON.stringify(program)}, dir: ${JSON.stringify(cacheDir)}, uid: ${uid} });`,
    'l.exports.start([], () => undefined).then((n) => process.stdout.write(`${l.cached} ${n}`));',
  ].join('\n');
  for (const offset of [24, 40, Math.floor((whole.length - dataStart) / 2)]) {
    const changed = Buffer.from(whole);
    changed[dataStart + offset] ^= 0xff;
    writeFileSync(path, changed);
    const run = spawnSync(process.execPath, ['--import', 'tsx', '-e', child], { encoding: 'utf8' });
    assert.is(run.signal, null, `byte ${offset} of V8's data changed: killed by ${run.signal}`);
    assert.is(run.stdout.split(' ')[0], 'false', `byte ${offset} of V8's data changed: the cache was used (${run.stdout.trim()} ${run.stderr.slice(0, 200)})`);
  }
});

load.run();
