// Reading input the hook does not control, with limits: the runtime's state
// on stdin (bounded in size and in time) and files in the bundle (bounded,
// regular files only, never through a symlink that leaves the bundle).

import { constants, promises as fs } from 'node:fs';
import { join, relative, isAbsolute } from 'node:path';
import { errnoCode, InputError, RefusedError, systemError, type ErrorContext } from './errors';

export interface StreamLimits {
  maxBytes: number;
  timeoutMs: number;
  /** Named in errors: "state on stdin". */
  what: string;
}

/**
 * Reads a stream to its end. Fails when it holds more than maxBytes or does
 * not end within timeoutMs (a runtime that never closes the hook's stdin
 * would otherwise hang container creation until the runtime's own timeout).
 */
export function readStreamBounded(stream: NodeJS.ReadableStream, limits: StreamLimits, context: ErrorContext = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (error?: Error) => {
      clearTimeout(timer);
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', onError);
      stream.pause();
      if (error) reject(error);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer | string) => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += buf.length;
      if (size > limits.maxBytes) {
        finish(new InputError(`${limits.what} is larger than ${limits.maxBytes} bytes`, context));
        return;
      }
      chunks.push(buf);
    };
    const onEnd = () => finish();
    const onError = (error: Error) => finish(systemError('reading', limits.what, error, context));
    const timer = setTimeout(
      () => finish(new InputError(`${limits.what} did not end within ${limits.timeoutMs} ms`, { ...context, hint: 'the runtime must write the state and close stdin' })),
      limits.timeoutMs,
    );
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.resume();
  });
}

/**
 * Reads a regular file inside `dir` (named relative to it), refusing a file
 * that is larger than maxBytes or that is a symlink resolving outside dir.
 */
export async function readFileInside(dir: string, name: string, maxBytes: number, context: ErrorContext = {}): Promise<Buffer> {
  const path = join(dir, name);
  let realDir: string;
  let realPath: string;
  try {
    realDir = await fs.realpath(dir);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new InputError(`bundle ${dir} does not exist`, { ...context, path: dir, cause: error });
    throw systemError('cannot open bundle', dir, error, context);
  }
  try {
    realPath = await fs.realpath(path);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw new InputError(`${path} does not exist`, { ...context, path, cause: error });
    throw systemError('cannot read', path, error, context);
  }
  const rel = relative(realDir, realPath);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
    throw new RefusedError(`${path} resolves to ${realPath}, outside the bundle`, { ...context, path });
  }
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(realPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    throw systemError('cannot read', path, error, context);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new InputError(`${path} is not a regular file`, { ...context, path });
    if (stat.size > maxBytes) throw new InputError(`${path} is larger than ${maxBytes} bytes`, { ...context, path });
    // Read one byte past the limit so a file that grows after fstat is still caught.
    const buffer = Buffer.alloc(Math.min(stat.size, maxBytes) + 1);
    let total = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, total, buffer.length - total, total);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total === buffer.length) break;
    }
    if (total > maxBytes) throw new InputError(`${path} is larger than ${maxBytes} bytes`, { ...context, path });
    return buffer.subarray(0, total);
  } catch (error) {
    if (error instanceof InputError) throw error;
    throw systemError('cannot read', path, error, context);
  } finally {
    await handle.close();
  }
}
