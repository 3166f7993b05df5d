// A user namespace that carries a container's mappings before the container
// exists. An ID-mapped mount takes its mapping from a user namespace
// (mount_setattr(2) MOUNT_ATTR_IDMAP wants a userns fd); the shim prepares
// the rootfs before the runtime makes the container's namespace, so it
// makes one of its own: a process started by unshare(1) in a new user
// namespace, whose uid_map and gid_map root writes from outside
// (user_namespaces(7) "Defining user and group ID mappings"). The mount
// keeps a reference to the namespace, so the process can go once the mounts
// are made.

import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { systemError } from '../errors';
import type { IdMapping } from '../oci/idmap';

export interface MappingUserns {
  /** /proc/PID/ns/user of the holding process: what the idmap helper's --userns takes. */
  usernsFile: string;
  /** Kills the holding process; the namespace lives on in the mounts made with it. */
  close(): void;
}

/** uid_map / gid_map text: "containerID hostID size" per line (user_namespaces(7)). */
export function formatProcIdMap(mappings: IdMapping[]): string {
  return mappings.map((m) => `${m.containerID} ${m.hostID} ${m.size}\n`).join('');
}

/**
 * Starts a process in a new user namespace with these mappings. Throws
 * SystemError when unshare cannot start or a map cannot be written.
 */
export async function mappingUserns(opts: { uidMappings: IdMapping[]; gidMappings: IdMapping[]; containerId?: string }): Promise<MappingUserns> {
  const { containerId } = opts;
  const child = spawn('unshare', ['--user', 'sleep', '3600'], { stdio: 'ignore' });
  const close = () => {
    child.kill('SIGKILL');
  };
  try {
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve(child.pid!));
    });
    const own = await fs.readlink('/proc/self/ns/user');
    // unshare(1) enters the new namespace right after exec: wait for it (a few ms at most).
    for (let tries = 0; (await fs.readlink(`/proc/${pid}/ns/user`)) === own; tries++) {
      if (tries > 2000 || child.exitCode !== null) throw new Error(`unshare --user exited ${child.exitCode ?? 'or hung'}`);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await fs.writeFile(`/proc/${pid}/uid_map`, formatProcIdMap(opts.uidMappings));
    await fs.writeFile(`/proc/${pid}/gid_map`, formatProcIdMap(opts.gidMappings));
    return { usernsFile: `/proc/${pid}/ns/user`, close };
  } catch (error) {
    close();
    throw systemError("cannot make a user namespace with the container's mappings with", 'unshare --user', error, { containerId });
  }
}
