// Where a shift's state is recorded: the state file under stateDir (read
// alone on the hook's path, see state.ts) and the marker on the rootfs
// directory (marker.ts), which travels with the tree. Written file first;
// read, the one with the higher sequence number wins.

import { MARKER_XATTR, readMarker, writeMarker } from './marker';
import { parseState, readStateFast, writeStateFile, type ShiftState } from './state';

/** The newest of the state file and the rootfs marker; undefined when neither exists. InputError when one does not parse. */
export async function readState(stateDir: string, rootfs: string): Promise<ShiftState | undefined> {
  const fromFile = readStateFast(stateDir, rootfs);
  const raw = await readMarker(rootfs);
  const fromMarker = raw === undefined ? undefined : parseState(raw, `xattr ${MARKER_XATTR} of ${rootfs}`);
  if (!fromFile) return fromMarker && { ...fromMarker, rootfs };
  if (!fromMarker) return fromFile;
  return fromMarker.seq > fromFile.seq ? { ...fromMarker, rootfs } : fromFile;
}

/** Records the state in both places, file first. SystemError when either write fails. */
export async function writeState(stateDir: string, state: ShiftState): Promise<void> {
  writeStateFile(stateDir, state);
  await writeMarker(state.rootfs, JSON.stringify(state));
}
