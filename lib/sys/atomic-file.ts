// Replacing a file so that a crash leaves the old content or the new, never
// half of either: a temp file in the same directory (so rename is atomic),
// written and fsynced, renamed over the original, then the directory
// fsynced so the rename itself is durable.

import { constants, promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { errnoCode, systemError, type ErrorContext } from '../errors';

/**
 * Replaces `path` with `text`, keeping the original file's mode and owner
 * (an engine may read config.json as another user). The temp file is
 * removed when anything fails.
 */
export async function replaceFileAtomic(path: string, text: string, context: ErrorContext = {}): Promise<void> {
  const dir = dirname(path);
  let original;
  try {
    original = await fs.stat(path);
  } catch (error) {
    throw systemError('cannot stat', path, error, context);
  }
  const temp = join(dir, `.${basename(path)}.oci-userns-${process.pid}.tmp`);
  let created = false;
  try {
    const file = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, original.mode & 0o7777);
    created = true;
    try {
      await file.writeFile(text);
      await file.chown(original.uid, original.gid);
      await file.chmod(original.mode & 0o7777);
      await file.sync();
    } finally {
      await file.close();
    }
    await fs.rename(temp, path);
    created = false;
    const dirHandle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  } catch (error) {
    if (created) await fs.unlink(temp).catch((unlinkError) => (errnoCode(unlinkError) === 'ENOENT' ? undefined : Promise.reject(unlinkError)));
    throw systemError('cannot replace', path, error, context);
  }
}
