// The shift state's copy on the rootfs directory itself, as the xattr
// trusted.oci-userns.shift: it travels with the tree (a copy or a move of
// the rootfs keeps it), where the state file under stateDir stays behind.

import { readXattr, writeXattr } from './xattr';

export const MARKER_XATTR = 'trusted.oci-userns.shift';

/** The marker's text, or undefined when the rootfs has none. Spawns getfattr. */
export async function readMarker(rootfs: string): Promise<string | undefined> {
  const raw = await readXattr(rootfs, MARKER_XATTR);
  return raw ? raw.toString('utf8') : undefined;
}

/** Sets the marker to `text`. Spawns setfattr. */
export function writeMarker(rootfs: string, text: string): Promise<void> {
  return writeXattr(rootfs, MARKER_XATTR, Buffer.from(text));
}
