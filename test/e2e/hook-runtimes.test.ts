// End to end for the hook contract (issue 2): a busybox container under real
// runc and real crun with `oci-userns hook` in its config.json at prestart,
// createRuntime and poststop. The log shows each stage ran and parsed the
// runtime's own state; a hook failing on a bad config file fails `runc run`
// with the hook's one line. Needs root, runc, crun and busybox-static.
import { existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { listRanges } from '../../lib/ranges/ranges';
import { skippedUnless } from '../helpers/skip';
import {
  BUSYBOX,
  buildProgram,
  buildSpec,
  busyboxRootfs,
  programHook,
  Runtime,
  Session,
  skipReason,
  uniqueId,
  Workspace,
  writeBundle,
  writeProgramConfig,
  type RuntimeName,
} from './harness';

const NAME = 'the hook under real runc and crun: every stage parses the real state';
const HOST_ID = 200000;
const SIZE = 65536;
const STAGES = ['prestart', 'createRuntime', 'poststop'] as const;

type LogLine = { stage: string; containerId?: string; outcome: string; status?: string; pid?: number; bundle?: string; message: string; released?: boolean; cgroup?: unknown; shift?: { action: string } };

const skip = await skipReason({ runtimes: ['runc', 'crun'], files: [{ path: BUSYBOX, hint: 'apt-get install busybox-static' }] });
const test = skippedUnless(suite(NAME), NAME, skip);
let work: Workspace | undefined;
let session: Session | undefined;

/** The one verdict line each hook run writes for a container (other lines: shift progress, releases). */
function logLines(file: string, containerId: string): LogLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as LogLine)
    .filter((line) => line.containerId === containerId && line.outcome !== undefined);
}

const allStages = (configPath: string) => Object.fromEntries(STAGES.map((stage) => [stage, [programHook(stage, configPath)]]));

test.before(async () => {
  await buildProgram();
  work = Workspace.create('oci-userns-hook-e2e-');
  session = await Session.open();
});
test.after(() => {
  session?.close();
  work?.remove();
});

for (const name of ['runc', 'crun'] as RuntimeName[]) {
  test(`${name}: no user namespace: each stage runs, parses the state, and changes nothing`, async () => {
    const runtime = new Runtime(session!, name);
    const rootfs = busyboxRootfs(work!.path(name, 'plain', 'rootfs'));
    const config = writeProgramConfig(work!.path(name, 'plain', 'config'));
    const bundle = writeBundle(work!.path(name, 'plain', 'bundle'), buildSpec({ runtime: name, rootfs, args: ['/bin/true'], userns: false, hooks: allStages(config.path) }));
    const id = uniqueId(`hook-plain-${name}`);
    try {
      const result = await runtime.run(id, bundle);
      assert.is(result.exitCode, 0, result.all);
      const lines = logLines(config.logFile, id);
      assert.equal(lines.map((l) => l.stage), [...STAGES], JSON.stringify(lines));
      for (const line of lines) {
        assert.is(line.outcome, 'not-applicable');
        assert.match(line.message, 'no user namespace');
        assert.is(line.bundle, bundle, 'the bundle came from the runtime state');
      }
      // runc says "creating" before start, crun "created"; both give the container's pid.
      for (const line of lines.slice(0, 2)) {
        assert.ok(['creating', 'created'].includes(line.status!), line.status);
        assert.ok(Number.isInteger(line.pid) && line.pid! > 0, `pid ${line.pid}`);
      }
      assert.is(lines[2]!.status, 'stopped');
      assert.is(lstatSync(rootfs).uid, 0, 'nothing shifted');
      assert.not.ok(existsSync(config.stateDir) && (await listRanges({ stateDir: config.stateDir })).some((e) => e.id === id), 'nothing registered');
    } finally {
      await runtime.cleanup();
    }
  });

  test(`${name}: user namespace: the hook registers, shifts, delegates, and releases at poststop`, async () => {
    const runtime = new Runtime(session!, name);
    const rootfs = busyboxRootfs(work!.path(name, 'userns', 'rootfs'));
    // The chown route, forced (test/e2e/idmap-rootfs.test.ts covers the default, an idmapped mount).
    const config = writeProgramConfig(work!.path(name, 'userns', 'config'), { shift: { method: 'chown' } });
    const spec = buildSpec({ runtime: name, rootfs, args: ['/bin/cat', '/proc/self/uid_map'], userns: { hostId: HOST_ID, size: SIZE }, hooks: allStages(config.path) });
    const bundle = writeBundle(work!.path(name, 'userns', 'bundle'), spec);
    const id = uniqueId(`hook-userns-${name}`);
    try {
      const result = await runtime.run(id, bundle);
      assert.is(result.exitCode, 0, `${result.all}\n${existsSync(config.logFile) ? readFileSync(config.logFile, 'utf8') : ''}`);
      assert.match(result.stdout, new RegExp(`^\\s*0\\s+${HOST_ID}\\s+${SIZE}\\s*$`, 'm'), 'the container ran in the user namespace');
      const lines = logLines(config.logFile, id);
      assert.equal(lines.map((l) => l.stage), [...STAGES], JSON.stringify(lines));
      assert.ok(lines.every((l) => l.outcome === 'done'), JSON.stringify(lines));
      assert.ok(lines.some((l) => l.shift?.action === 'shifted'), 'one of the setup stages shifted the rootfs');
      assert.ok(lines.slice(0, 2).every((l) => l.cgroup !== undefined), 'each setup stage delegated (idempotent the second time)');
      assert.is(lines[2]!.released, true, 'poststop released the range');
      assert.is(`${lstatSync(rootfs).uid}:${lstatSync(rootfs).gid}`, `${HOST_ID}:${HOST_ID}`);
      assert.equal(await listRanges({ stateDir: config.stateDir }), [], 'registry empty after poststop');
    } finally {
      await runtime.cleanup();
    }
  });

  test(`${name}: a hook failing on a bad config file fails the container${name === 'runc' ? ' with the hook\'s one line' : ' (crun drops hook output; the log has the line)'}`, async () => {
    const runtime = new Runtime(session!, name);
    const rootfs = busyboxRootfs(work!.path(name, 'bad', 'rootfs'));
    const config = writeProgramConfig(work!.path(name, 'bad', 'config'));
    writeFileSync(config.path, JSON.stringify({ logFile: config.logFile, shift: { mod: 'auto' } }));
    const hook = programHook('createRuntime', config.path);
    hook.env = [...(hook.env ?? []), `OCI_USERNS_LOG_FILE=${config.logFile}`];
    const bundle = writeBundle(work!.path(name, 'bad', 'bundle'), buildSpec({ runtime: name, rootfs, args: ['/bin/true'], userns: false, hooks: { createRuntime: [hook] } }));
    const id = uniqueId(`hook-bad-${name}`);
    try {
      const result = await runtime.run(id, bundle);
      assert.ok(result.exitCode !== 0, `${name} run should fail: ${result.all}`);
      const line = `oci-userns: createRuntime: config file ${config.path}: unknown key 'shift.mod'`;
      if (name === 'runc') assert.ok(result.all.includes(line), `runc's error carries the hook's line:\n${result.all}`);
      assert.ok(readFileSync(config.logFile, 'utf8').includes(line), 'the log carries the same line');
    } finally {
      await runtime.cleanup();
    }
  });
}

test.run();
