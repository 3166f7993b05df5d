// mount(8) and umount(8) from util-linux: Node has no mount system calls,
// and what the idmap helper does not do (an overlay mount, an unmount) is
// plain util-linux work.

import { execFile } from 'node:child_process';
import { SystemError } from '../errors';

/**
 * Runs `mount` or `umount` with `args` (cwd: `cwd`, for relative overlay
 * layer paths). Throws SystemError with the tool's first stderr line,
 * naming `path` and the container.
 */
export function mountTool(tool: 'mount' | 'umount', args: string[], context: { path: string; containerId?: string; cwd?: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { timeout: 30_000, killSignal: 'SIGKILL', encoding: 'utf8', ...(context.cwd ? { cwd: context.cwd } : {}) }, (error, _stdout, stderr) => {
      if (!error) return resolve();
      const line = stderr.trim().split('\n')[0] || error.message;
      reject(new SystemError(`${tool} ${args.join(' ')} failed: ${line}`, { path: context.path, containerId: context.containerId, cause: error }));
    });
  });
}
