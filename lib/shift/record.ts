// Where a shift's state is recorded: the state file under stateDir (read
// alone on the hook's path, see state.ts) and the marker on the rootfs
// directory (marker.ts), which travels with the tree. Written file first;
// read, the one with the higher sequence number wins, and neither is
// trusted against what the tree shows (see readState).

import { lstatSync } from 'node:fs';
import { MARKER_XATTR, readMarker, writeMarker } from './marker';
import { ownerFits, parseState, readStateFast, writeStateFile, type ShiftState } from './state';

/**
 * The record of the tree now at `rootfs`, or undefined when it has none
 * (never shifted, or deleted and unpacked again at this path). The state
 * file counts only when the tree carries a marker with the same tree id
 * (a tree replaced at the same path has none, or another); the newer of
 * file and marker then counts only when the root directory's owner is one
 * the record allows (a tree unpacked again over a shifted one is owned by
 * host root). InputError when one does not parse.
 */
export async function readState(stateDir: string, rootfs: string): Promise<ShiftState | undefined> {
  const fromFile = readStateFast(stateDir, rootfs);
  const raw = await readMarker(rootfs);
  const fromMarker = raw === undefined ? undefined : { ...parseState(raw, `xattr ${MARKER_XATTR} of ${rootfs}`), rootfs };
  const file = fromFile && fromMarker && fromFile.tree?.id === fromMarker.tree?.id ? fromFile : undefined;
  const newest = file && fromMarker ? (fromMarker.seq > file.seq ? fromMarker : file) : fromMarker;
  if (newest === undefined) return undefined;
  const st = lstatSync(rootfs);
  return ownerFits(newest, { uid: st.uid, gid: st.gid }) ? newest : undefined;
}

/** Records the state in both places, file first. SystemError when either write fails. */
export async function writeState(stateDir: string, state: ShiftState): Promise<void> {
  writeStateFile(stateDir, state);
  await writeMarker(state.rootfs, JSON.stringify(state));
}
