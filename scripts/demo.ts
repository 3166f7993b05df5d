// The demo behind scripts/demo.sh: a Debian bookworm rootfs unpacked as host
// root, booted with /sbin/init under runc in a user namespace (container 0
// -> host 300000, 65536 ids). Without oci-userns systemd would see its files
// as nobody and die on "Failed to create /init.scope control group"; with
// the hook it boots. The rootfs sits behind a directory closed to every host
// user but the container's range, so the hook gives it an ID-mapped mount
// (nothing rewritten; README "ID-mapped rootfs"). Prints what the hook did
// and systemd's state, then removes the container and the temporary tree.
import { lstatSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { resolveCgroupDir, unifiedCgroupPath } from '../lib/cgroup/delegate';
import { cgroup2Mount } from '../lib/sys/mountinfo';
import { buildIdmapHelper, buildProgram, buildSpec, closeParentToRange, debianRootfs, programHook, Runtime, Session, skipReason, uniqueId, waitForSystemd, Workspace, writeBundle, writeProgramConfig } from '../test/e2e/harness';

const HOST_ID = 300000;
const SIZE = 65536;
const runtimeName = process.argv[2] === 'crun' ? 'crun' : 'runc';

const blocked = await skipReason({ runtimes: [runtimeName], commands: ['tar'] });
if (blocked) {
  console.error(`demo: cannot run here: ${blocked}`);
  process.exit(1);
}

const step = (text: string) => console.log(`\n== ${text}`);
const owner = (path: string) => `${lstatSync(path).uid}:${lstatSync(path).gid}`;

await buildProgram();
await buildIdmapHelper();
const work = Workspace.create('oci-userns-demo-');
const session = await Session.open();
const runtime = new Runtime(session, runtimeName);
try {
  step('Debian bookworm with systemd (cached tarball; the first run builds it with debootstrap)');
  const rootfs = closeParentToRange(await debianRootfs(work.path('private', 'rootfs')), HOST_ID);
  console.log(`rootfs ${rootfs}, owned by ${owner(rootfs)} (host root), behind ${dirname(rootfs)} (0700, the range's root)`);

  const config = writeProgramConfig(work.path('config'));
  const id = uniqueId('oci-userns-demo');
  const cgroup = `/${id}`;
  const spec = buildSpec({
    runtime: runtimeName,
    rootfs,
    args: ['/sbin/init'],
    cgroupsPath: cgroup,
    userns: { hostId: HOST_ID, size: SIZE },
    systemd: true,
    hooks: { createRuntime: [programHook('createRuntime', config.path)], poststop: [programHook('poststop', config.path)] },
  });
  const bundle = writeBundle(work.path('bundle'), spec);
  step(`${runtimeName} run -d ${id}: user namespace 0 -> ${HOST_ID} (${SIZE} ids), cgroup namespace, hook at createRuntime`);
  const started = await runtime.run(id, bundle, { detach: true });
  if (started.exitCode !== 0) throw new Error(`${runtimeName} run failed: ${started.all}`);
  const verdict = readFileSync(config.logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).find((l) => l.stage === 'createRuntime' && l.outcome);
  console.log(`hook: ${verdict.message} in ${verdict.durationMs} ms`);
  console.log(`  range   ${JSON.stringify(verdict.range)}`);
  console.log(`  shift   ${JSON.stringify(verdict.shift)}`);
  console.log(`  cgroup  ${JSON.stringify(verdict.cgroup)}`);
  console.log(`raw rootfs now owned by ${owner(rootfs)}${verdict.shift?.action === 'idmapped' ? ' (an ID-mapped mount: nothing rewritten)' : ''}`);

  step('systemctl is-system-running --wait (inside the container)');
  const { state, output } = await waitForSystemd(runtime, id);
  console.log(state === 'running' || state === 'degraded' ? state : `${state}: ${output}`);
  const pid = (await runtime.state(id))!.pid;
  console.log(`PID 1 is host pid ${pid}; its uid_map: ${readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim()}`);
  const dir = resolveCgroupDir(cgroup2Mount(readFileSync('/proc/self/mountinfo', 'utf8'))!, cgroup);
  console.log(`systemd's cgroup: ${unifiedCgroupPath(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))} (container cgroup ${dir} owned by ${owner(dir)}, init.scope owned by ${owner(join(dir, 'init.scope'))})`);

  step('systemctl list-units --type=service --state=running');
  console.log((await runtime.exec(id, ['systemctl', 'list-units', '--type=service', '--state=running', '--no-pager', '--plain', '--no-legend'])).stdout.trim());
  if (state !== 'running' && state !== 'degraded') process.exitCode = 1;
} finally {
  step('cleaning up');
  await runtime.cleanup();
  session.close();
  work.remove();
  console.log('container deleted, temporary tree removed');
}
