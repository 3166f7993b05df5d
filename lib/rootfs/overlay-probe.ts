// Whether this kernel and the filesystem under `dir` take an overlay over an
// idmapped lower layer (Linux 5.19+), the way lib/rootfs/overlay.ts
// rebuilds an overlay rootfs: tried for real on a throwaway tree, inside a
// private mount namespace (unshare -m), so every mount of the try goes with
// it and nothing is ever mounted on the host.

import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { findIdmapHelper, HELPER_EXIT, IDMAP_HELPER_NAME } from './idmap-mount';
import { mappingUserns } from './mapping-userns';

/**
 * { supported: true } when an overlay mounted over an idmapped clone of a
 * directory in `dir` works; otherwise the first line of what refused it (or
 * that the helper is missing). Leaves nothing behind. Never throws: a
 * probe that cannot run is { supported: false, reason }.
 */
export async function probeOverlayIdmap(opts: { dir: string; helper?: string }): Promise<{ supported: true } | { supported: false; reason: string }> {
  const helper = opts.helper ?? findIdmapHelper();
  if (!helper) return { supported: false, reason: `the helper ${IDMAP_HELPER_NAME} is not installed` };
  let base: string | undefined;
  let userns: Awaited<ReturnType<typeof mappingUserns>> | undefined;
  try {
    base = await fs.mkdtemp(join(opts.dir, '.oci-userns-overlay-probe-'));
    for (const d of ['lower', 'upper', 'work', 'clone', 'merged']) await fs.mkdir(join(base, d));
    userns = await mappingUserns({ uidMappings: [{ containerID: 0, hostID: 65534, size: 1 }], gidMappings: [{ containerID: 0, hostID: 65534, size: 1 }] });
    const script = '"$0" mount --userns "$1" "$2/lower" "$2/clone" >/dev/null || exit $?; mount -t overlay overlay -o "lowerdir=$2/clone,upperdir=$2/upper,workdir=$2/work" "$2/merged" || exit 7';
    const status = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, helper, userns!.usernsFile, base!], { timeout: 10_000, encoding: 'utf8' }, (error, _stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stderr });
      });
    });
    if (status.code === 0) return { supported: true };
    const line = status.stderr.trim().split('\n')[0] ?? '';
    if (status.code === 7) return { supported: false, reason: `the kernel refused an overlay over an idmapped lower layer (Linux 5.19+): ${line}` };
    if (status.code === HELPER_EXIT.unsupported) return { supported: false, reason: line };
    return { supported: false, reason: `the probe failed (exit ${status.code}): ${line}` };
  } catch (error) {
    return { supported: false, reason: `the probe could not run: ${error instanceof Error ? error.message : String(error)}` };
  } finally {
    userns?.close();
    // Only empty directories and the overlay's work dir: the mounts lived in the probe's own namespace.
    if (base) await fs.rm(base, { recursive: true, force: true });
  }
}
