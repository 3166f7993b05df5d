// npm run bench:boot: how long systemd takes from `run -d` to `systemctl
// is-system-running` = running, on the Debian rootfs in a user namespace
// (container 0 -> 300000), with
//   - runc + the oci-userns hook (createRuntime; its shift check finds the pre-shifted rootfs done),
//   - runc and crun + the oci-userns hook idmapping a rootfs owned by host root
//     (behind a parent closed to other host users, README "ID-mapped rootfs"),
//   - runc + the oci-userns hook chown-shifting a rootfs owned by host root
//     (shift.method chown; the tree is reset, untimed, before each boot),
//   - runc + a shell hook that only chowns the cgroup (the floor, pre-shifted rootfs),
//   - crun and its built-in delegation, no hook (for reference, pre-shifted rootfs),
// interleaved round by round, medians of BENCH_RUNS rounds (default 5)
// after one warm-up round. Also the time until `run -d` returns, which is
// where the hook's cost lands. Needs root, runc, crun, cgroup2.

import { rmSync } from 'node:fs';
import { execa } from 'execa';
import { shiftTree } from '../lib/shift/shift';
import { buildIdmapHelper, buildProgram, buildSpec, cgroupChownHook, closeParentToRange, debianRootfs, programHooks, Runtime, Session, skipReason, uniqueId, waitForSystemd, Workspace, writeBundle, writeProgramConfig, type RuntimeName } from '../test/e2e/harness';
import { median, printTable } from './measure';
import type { Spec } from '../lib/oci/spec';

const runs = Number(process.env.BENCH_RUNS ?? 5);
const HOST_ID = 300000;
const SIZE = 65536;

interface Variant {
  name: string;
  runtime: RuntimeName;
  bundle: string;
  started: number[];
  running: number[];
  /** Untimed, before each boot. */
  prepare?: () => Promise<void>;
}

const skip = await skipReason({ runtimes: ['runc', 'crun'], commands: ['tar'] });
if (skip) {
  console.error(`bench:boot: cannot run here: ${skip}`);
  process.exit(1);
}

await Promise.all([buildProgram(), buildIdmapHelper()]);
const work = Workspace.create('oci-userns-bench-boot-');
const session = await Session.open();
const runtimes = { runc: new Runtime(session, 'runc'), crun: new Runtime(session, 'crun') };

async function boot(variant: Variant): Promise<{ started: number; running: number }> {
  const runtime = runtimes[variant.runtime];
  const id = uniqueId(`bench-boot-${variant.runtime}`);
  await variant.prepare?.();
  try {
    const t0 = performance.now();
    const run = await runtime.run(id, variant.bundle, { detach: true });
    const started = performance.now() - t0;
    if (run.exitCode !== 0) throw new Error(`${variant.name}: run -d failed: ${run.all}`);
    const { state, output } = await waitForSystemd(runtime, id);
    const running = performance.now() - t0;
    if (state !== 'running' && state !== 'degraded') throw new Error(`${variant.name}: systemd is ${state}: ${output}`);
    return { started, running };
  } finally {
    await runtime.cleanup();
  }
}

try {
  const rootfs = await debianRootfs(work.path('rootfs'));
  const map = [{ containerID: 0, hostID: HOST_ID, size: SIZE }];
  await shiftTree({ rootfs, uidMap: map, gidMap: map, unmapped: 'error', stateDir: work.path('shift-state') });
  const config = writeProgramConfig(work.path('config'));
  const chownConfig = writeProgramConfig(work.path('config-chown'), { shift: { method: 'chown' } });
  // Rootfs owned by host root, each behind its own parent closed to other host users (0700, the range's root).
  const unshifted = async (name: string) => closeParentToRange(await debianRootfs(work.path(name, 'rootfs')), HOST_ID);
  const idmapRootfs = await unshifted('idmap');
  const chownRootfs = await unshifted('chown');
  const resetChown = async () => {
    await execa('chown', ['-R', '-P', '0:0', chownRootfs]);
    await execa('setfattr', ['-x', 'trusted.oci-userns.shift', chownRootfs], { reject: false });
    rmSync(chownConfig.stateDir, { recursive: true, force: true });
  };
  const bundle = (name: string, runtime: RuntimeName, hooks?: Spec['hooks'], tree = rootfs) =>
    writeBundle(work.path(`${name}-bundle`), buildSpec({ runtime, rootfs: tree, args: ['/sbin/init'], userns: { hostId: HOST_ID, size: SIZE }, systemd: true, ...(hooks ? { hooks } : {}) }));
  const variants: Variant[] = [
    { name: 'runc + oci-userns hook (pre-shifted)', runtime: 'runc', bundle: bundle('hook', 'runc', programHooks(config.path)), started: [], running: [] },
    { name: 'runc + sh chown hook (floor)', runtime: 'runc', bundle: bundle('floor', 'runc', { createRuntime: [cgroupChownHook(work.path('floor-hook'), HOST_ID, HOST_ID)] }), started: [], running: [] },
    { name: 'crun, built-in delegation', runtime: 'crun', bundle: bundle('crun', 'crun'), started: [], running: [] },
    { name: 'runc + oci-userns hook, idmap', runtime: 'runc', bundle: bundle('idmap-runc', 'runc', programHooks(config.path), idmapRootfs), started: [], running: [] },
    { name: 'crun + oci-userns hook, idmap', runtime: 'crun', bundle: bundle('idmap-crun', 'crun', programHooks(config.path), idmapRootfs), started: [], running: [] },
    { name: 'runc + oci-userns hook, chown shift', runtime: 'runc', bundle: bundle('chown', 'runc', programHooks(chownConfig.path), chownRootfs), started: [], running: [], prepare: resetChown },
  ];
  for (let round = 0; round < runs + 1; round++) {
    for (const variant of variants) {
      const { started, running } = await boot(variant);
      if (round === 0) continue;
      variant.started.push(started);
      variant.running.push(running);
    }
  }
  const floor = variants[1]!;
  const ms = (value: number) => `${value.toFixed(0)} ms`;
  console.log(`systemd boot in a user namespace, Debian bookworm, medians of ${runs} rounds (host: cgroup ${session.host.kind})`);
  printTable([
    ['', 'run -d returned', 'systemd running', 'vs floor'],
    ...variants.map((v): [string, ...string[]] => [v.name, ms(median(v.started)), ms(median(v.running)), `${(median(v.running) / median(floor.running)).toFixed(2)}x`]),
  ]);
  const hook = variants[0]!;
  console.log(`oci-userns hook over the floor: +${(median(hook.started) - median(floor.started)).toFixed(0)} ms until run -d returns, +${(median(hook.running) - median(floor.running)).toFixed(0)} ms until running`);
} finally {
  await runtimes.runc.cleanup();
  await runtimes.crun.cleanup();
  session.close();
  work.remove();
}
