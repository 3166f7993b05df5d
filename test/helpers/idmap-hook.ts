// A createRuntime hook for the idmap end-to-end tests, run by runc or crun
// through tsx: reads the state on stdin and the bundle's config.json, calls
// idmapRootfs (the act the real hook will call once lib/hook plans an
// 'idmap' rootfs step), and writes the result as JSON to $IDMAP_HOOK_RESULT.
// Exits 1 with the error on stderr when it throws, so the runtime fails.
import { writeFileSync } from 'node:fs';
import { readSpec, rootfsPath } from '../../lib/oci/spec';
import { parseState } from '../../lib/oci/state';
import { idmapRootfs } from '../../lib/rootfs/idmap-rootfs';

const chunks: Buffer[] = [];
for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
try {
  const state = parseState(Buffer.concat(chunks).toString('utf8'));
  const spec = await readSpec(state.bundle, 1 << 20, state.id);
  const started = performance.now();
  const result = await idmapRootfs({ pid: state.pid!, rootfs: rootfsPath(spec, state.bundle)!, containerId: state.id, helper: process.env.IDMAP_HELPER });
  writeFileSync(process.env.IDMAP_HOOK_RESULT!, JSON.stringify({ ...result, hookMs: performance.now() - started }));
} catch (error) {
  console.error(`idmap-hook: ${(error as Error).message}`);
  process.exitCode = 1;
}
