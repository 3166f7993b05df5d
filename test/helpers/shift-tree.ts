// Builds the trees the shift tests use (every kind of inode the issue lists)
// and snapshots a tree's ownership, modes, ACLs and capabilities.

import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export { hasTool } from './skip';

export function sh(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A tree with setuid/setgid files, ACLs, caps, hard links, outward symlinks, devices, a fifo, a socket and a sticky dir. */
export function buildTree(root: string, hostFile: string): void {
  const file = (path: string, uid: number, gid: number, mode: number) => {
    writeFileSync(join(root, path), `${path}\n`);
    chownSync(join(root, path), uid, gid);
    chmodSync(join(root, path), mode);
  };
  const dir = (path: string, uid: number, gid: number, mode: number) => {
    mkdirSync(join(root, path), { recursive: true });
    chownSync(join(root, path), uid, gid);
    chmodSync(join(root, path), mode);
  };
  dir('etc', 0, 0, 0o755);
  dir('home/user', 1000, 1000, 0o750);
  dir('tmp', 0, 0, 0o1777);
  dir('var/log/journal', 0, 101, 0o2755);
  dir('usr/bin', 0, 0, 0o755);
  dir('mnt/inner', 0, 0, 0o755);
  file('etc/passwd', 0, 0, 0o644);
  file('etc/shadow', 0, 42, 0o640);
  file('home/user/notes', 1000, 1000, 0o600);
  file('usr/bin/su', 0, 0, 0o4755);
  file('usr/bin/wall', 0, 5, 0o2755);
  file('usr/bin/ping', 0, 0, 0o755);
  file('usr/bin/both', 0, 0, 0o6755);
  file('tmp/nobody', 65534, 65534, 0o644);
  linkSync(join(root, 'usr/bin/su'), join(root, 'etc/su-link'));
  linkSync(join(root, 'home/user/notes'), join(root, 'tmp/notes-link'));
  symlinkSync(hostFile, join(root, 'etc/abs-link'));
  symlinkSync(`../../../../../../../..${hostFile}`, join(root, 'usr/bin/rel-link'));
  symlinkSync('/', join(root, 'etc/root-link'));
  sh('setfacl', ['-m', 'u:1000:rx,g:50:r', join(root, 'etc/shadow')]);
  sh('setfacl', ['-m', 'u:1000:rwx,g:4:rx', '-d', '-m', 'u:1000:rwx,g:4:rx', join(root, 'var/log/journal')]);
  sh('setcap', ['cap_net_raw=ep', join(root, 'usr/bin/ping')]);
  sh('setcap', ['cap_net_admin,cap_sys_time=p', join(root, 'usr/bin/both')]);
  sh('mknod', [join(root, 'etc/null'), 'c', '1', '3']);
  sh('mknod', [join(root, 'etc/loop'), 'b', '7', '0']);
  sh('mkfifo', [join(root, 'tmp/fifo')]);
  sh('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', join(root, 'tmp/sock')]);
  chownSync(join(root, 'tmp/fifo'), 1000, 1000);
  chownSync(join(root, 'etc/null'), 0, 0);
  chownSync(root, 0, 0);
}

export interface InodeState {
  uid: number;
  gid: number;
  mode: number;
  acl?: string;
  defaultAcl?: string;
  cap?: string;
}

/** Every inode below root (not crossing into other filesystems), by relative path. */
export function snapshot(root: string): Map<string, InodeState> {
  const dev = lstatSync(root).dev;
  const out = new Map<string, InodeState>();
  const xattrs = readXattrs(root);
  const visit = (path: string) => {
    const st = lstatSync(path);
    if (st.dev !== dev) return;
    const rel = relative(root, path) || '.';
    out.set(rel, { uid: st.uid, gid: st.gid, mode: st.mode, ...xattrs.get(path) });
    if (st.isDirectory()) for (const name of readdirSync(path).sort()) visit(join(path, name));
  };
  visit(root);
  return out;
}

function readXattrs(root: string): Map<string, Pick<InodeState, 'acl' | 'defaultAcl' | 'cap'>> {
  const text = sh('getfattr', ['-R', '-P', '-h', '-d', '-m', '^(security\\.capability|system\\.posix_acl_(access|default))$', '-e', 'hex', '--absolute-names', root]);
  const out = new Map<string, Pick<InodeState, 'acl' | 'defaultAcl' | 'cap'>>();
  let current: Pick<InodeState, 'acl' | 'defaultAcl' | 'cap'> = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) out.set(line.slice(8), (current = {}));
    else if (line.startsWith('security.capability=')) current.cap = line.split('=')[1];
    else if (line.startsWith('system.posix_acl_access=')) current.acl = line.split('=')[1];
    else if (line.startsWith('system.posix_acl_default=')) current.defaultAcl = line.split('=')[1];
  }
  return out;
}

