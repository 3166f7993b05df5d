// Paths in the shift as strings that keep every byte. Linux names are bytes;
// Node decodes them as UTF-8 and replaces what is not UTF-8, so such a name
// could not be found again. A path that is valid UTF-8 is its own key; any
// other is a NUL (which no path holds) followed by its bytes as latin1. The
// walker threads inline the same rule (they cannot import): see walk.ts.

import { isUtf8 } from 'node:buffer';

const BINARY = '\0';

export function keyOfBytes(bytes: Buffer): string {
  return isUtf8(bytes) ? bytes.toString('utf8') : BINARY + bytes.toString('latin1');
}

export function pathBytes(key: string): Buffer {
  return key.startsWith(BINARY) ? Buffer.from(key.slice(1), 'latin1') : Buffer.from(key, 'utf8');
}

/** What fs calls take: the key itself, or the bytes of a binary one. */
export function fsPath(key: string): string | Buffer {
  return key.startsWith(BINARY) ? pathBytes(key) : key;
}

/** Bytes outside printable ASCII, and the backslash, as \ooo (getfattr's escapes). */
export function escapeBytes(bytes: Buffer): string {
  let out = '';
  for (const byte of bytes) out += byte > 0x20 && byte < 0x7f && byte !== 0x5c ? String.fromCharCode(byte) : `\\${byte.toString(8).padStart(3, '0')}`;
  return out;
}

/** A key for messages and logs: itself, or with \ooo escapes when it is not UTF-8. */
export function displayPath(key: string): string {
  return key.startsWith(BINARY) ? escapeBytes(pathBytes(key)) : key;
}

/**
 * FNV-1a, 64 bits, as 16 hex digits: a file name for a path (a rootfs's
 * shift state, a bundle's lent config.json). Not node:crypto, whose loading
 * alone costs the hook and the shim 1.5 to 3 ms.
 */
export function pathHash(path: string): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(path)) hash = BigInt.asUintN(64, (hash ^ BigInt(byte)) * 0x100000001b3n);
  return hash.toString(16).padStart(16, '0');
}
