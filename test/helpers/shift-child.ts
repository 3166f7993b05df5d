// Runs one shift and kills itself with SIGKILL just before the Nth change
// to the tree (chown or chmod), for the crash test. Usage:
// node --import tsx shift-child.ts ROOTFS STATEDIR UIDMAP CRASH_AT BATCH [PAUSE_MS]
// (CRASH_AT 0: never; PAUSE_MS: sleep before each change, to hold the lock
// while another shift of the tree starts).
// The walker runs in this thread (threads: 0), where the patched fs counts
// every change; the rerun in the test uses the default walker threads.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { parseIdMap } from '../../lib/oci/idmap';
import { shiftTree } from '../../lib/shift/shift';

const [rootfs, stateDir, map, crashAt, batch, pauseMs] = process.argv.slice(2);
let calls = 0;
const countThenCall = <T extends (...args: never[]) => unknown>(fn: T): T =>
  ((...args: Parameters<T>) => {
    if (pauseMs) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(pauseMs));
    if (++calls === Number(crashAt)) process.kill(process.pid, 'SIGKILL');
    return fn(...args);
  }) as T;
fs.lchownSync = countThenCall(fs.lchownSync);
fs.chmodSync = countThenCall(fs.chmodSync);
syncBuiltinESMExports();

shiftTree({ rootfs: rootfs!, uidMap: parseIdMap(map!), gidMap: parseIdMap(map!), unmapped: 'error', stateDir: stateDir!, batchSize: Number(batch), threads: 0 }).then(
  () => process.stdout.write(`done ${calls}\n`),
  (error: unknown) => {
    process.stderr.write(`${String(error)}\n`);
    process.exitCode = 1;
  },
);
