// The oracle test: shift one copy of the Debian rootfs with this engine and
// another with systemd-nspawn's chown mode to the same 65536-aligned range,
// and compare uid, gid, mode and ACLs on every inode. File capabilities are
// checked on their own (nspawn does not write them as v3).

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { decodeFileCaps } from '../../lib/shift/fcaps';
import { parseIdMap } from '../../lib/oci/idmap';
import { shiftTree } from '../../lib/shift/shift';
import { snapshot } from '../helpers/shift-tree';
import { rootSkipReason, skippedUnless } from '../helpers/skip';

const HOST = 196608;
const repo = join(import.meta.dirname, '..', '..');

function tarball(): string | undefined {
  const r = spawnSync('bash', [join(repo, 'scripts', 'debian-rootfs.sh')], { encoding: 'utf8' });
  const path = r.stdout?.trim();
  return r.status === 0 && path && existsSync(path) ? path : undefined;
}

const needs = rootSkipReason(['systemd-nspawn', 'tar']);
const tar = needs === undefined ? tarball() : undefined;
const skip = needs ?? (tar === undefined ? 'the Debian rootfs tarball could not be made (scripts/debian-rootfs.sh)' : undefined);
const test = skippedUnless(suite('engine and systemd-nspawn agree on a Debian rootfs'), 'shift-nspawn', skip);
let work = '';
test.after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('same uid, gid, mode and ACLs on every inode; caps as v3 for container root', async () => {
  work = mkdtempSync(join('/var/tmp', 'oci-userns-oracle-'));
  chmodSync(work, 0o755);
  const ours = join(work, 'ours');
  const theirs = join(work, 'theirs');
  for (const dir of [ours, theirs]) {
    mkdirSync(dir);
    const x = spawnSync('tar', ['--xattrs', '--xattrs-include=*', '--acls', '--numeric-owner', '-xpf', tar!, '-C', dir], { encoding: 'utf8' });
    assert.is(x.status, 0, x.stderr);
  }
  const original = snapshot(ours);
  const map = parseIdMap(`0:${HOST}:65536`);
  await shiftTree({ rootfs: ours, uidMap: map, gidMap: map, unmapped: 'error', stateDir: join(work, 'state') });
  const n = spawnSync('systemd-nspawn', ['-q', '--register=no', '--keep-unit', '--resolv-conf=off', '--timezone=off', '--link-journal=no', `--private-users=${HOST}:65536`, '--private-users-ownership=chown', '-D', theirs, '/usr/bin/true'], { encoding: 'utf8' });
  assert.is(n.status, 0, n.stderr);
  const a = snapshot(ours);
  const b = snapshot(theirs);
  let compared = 0;
  const differ: string[] = [];
  for (const [path, mine] of a) {
    const other = b.get(path);
    if (!other) continue;
    compared++;
    const pick = (s: typeof mine) => [s.uid, s.gid, s.mode, s.acl ?? '', s.defaultAcl ?? ''];
    if (JSON.stringify(pick(mine)) !== JSON.stringify(pick(other))) differ.push(`${path}: ours ${JSON.stringify(pick(mine))} nspawn ${JSON.stringify(pick(other))}`);
  }
  assert.ok(compared > 5000, `compared only ${compared} inodes`);
  assert.equal(differ.slice(0, 10), [], `${differ.length} inodes differ`);
  for (const [path, before] of original) {
    if (!before.cap) continue;
    const after = a.get(path)!.cap;
    assert.ok(after, `${path} kept its capabilities`);
    const caps = decodeFileCaps(Buffer.from(after!.slice(2), 'hex'));
    assert.is(caps.rootid, HOST, `${path} caps belong to container root`);
    assert.is(caps.permitted, decodeFileCaps(Buffer.from(before.cap.slice(2), 'hex')).permitted);
  }
});

test.run();
