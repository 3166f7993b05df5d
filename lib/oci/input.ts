// Reading input the hook does not control, with limits: the runtime's state
// on stdin (bounded in size and in time) and files in the bundle (bounded,
// regular files only, never through a symlink that leaves the bundle).

import { closeSync, constants, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { join, relative, isAbsolute } from 'node:path';
import { errnoCode, InputError, RefusedError, systemError, type ErrorContext } from '../errors';

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
 * Reads the hook's stdin to its end, with the same limits, without
 * process.stdin: its first use loads Node's stream machinery (about 5 ms of
 * a 60 ms start). The descriptor is reopened non-blocking through
 * /proc/self/fd, because a blocking read parked in libuv's threadpool would
 * hold the process at exit until the runtime closed the pipe, defeating the
 * timeout. Returns undefined when stdin cannot be reopened (a socket), so
 * the caller falls back to the stream.
 */
export async function readStdinBounded(limits: StreamLimits, context: ErrorContext = {}, path = '/proc/self/fd/0'): Promise<Buffer | undefined> {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  const deadline = Date.now() + limits.timeoutMs;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for (;;) {
      const buffer = Buffer.allocUnsafe(64 * 1024);
      let bytesRead: number;
      try {
        bytesRead = readSync(fd, buffer, 0, buffer.length, null);
      } catch (error) {
        if (errnoCode(error) !== 'EAGAIN') throw systemError('reading', limits.what, error, context);
        if (Date.now() >= deadline) {
          throw new InputError(`${limits.what} did not end within ${limits.timeoutMs} ms`, { ...context, hint: 'the runtime must write the state and close stdin' });
        }
        // The runtime writes the state at once; poll briefly rather than block.
        await new Promise((r) => setTimeout(r, 2));
        continue;
      }
      if (bytesRead === 0) return Buffer.concat(chunks, size);
      size += bytesRead;
      if (size > limits.maxBytes) throw new InputError(`${limits.what} is larger than ${limits.maxBytes} bytes`, context);
      chunks.push(buffer.subarray(0, bytesRead));
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a regular file of at most maxBytes. Synchronous on purpose: the
 * files are small, and the hook's start-up would otherwise pay for loading
 * fs/promises. Errors name `what`; errno failures are left to the caller.
 */
export function readRegularFileSync(path: string, maxBytes: number, what: string, flags = constants.O_RDONLY, context: ErrorContext = {}): Buffer {
  const fd = openSync(path, flags | constants.O_NONBLOCK);
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new InputError(`${what} is not a regular file`, { ...context, path });
    if (stat.size > maxBytes) throw new InputError(`${what} is larger than ${maxBytes} bytes`, { ...context, path });
    // Read one byte past the limit so a file that grows after fstat is still caught.
    const buffer = Buffer.alloc(Math.min(stat.size, maxBytes) + 1);
    let total = 0;
    for (;;) {
      const bytesRead = readSync(fd, buffer, total, buffer.length - total, total);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total === buffer.length) break;
    }
    if (total > maxBytes) throw new InputError(`${what} is larger than ${maxBytes} bytes`, { ...context, path });
    return buffer.subarray(0, total);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a regular file inside `dir` (named relative to it), refusing a file
 * that is larger than maxBytes or that is a symlink resolving outside dir.
 */
export function readFileInside(dir: string, name: string, maxBytes: number, context: ErrorContext = {}): Buffer {
  const path = join(dir, name);
  let realDir: string;
  let realPath: string;
  try {
    realDir = realpathSync(dir);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new InputError(`bundle ${dir} does not exist`, { ...context, path: dir, cause: error });
    throw systemError('cannot open bundle', dir, error, context);
  }
  try {
    realPath = realpathSync(path);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw new InputError(`${path} does not exist`, { ...context, path, cause: error });
    throw systemError('cannot read', path, error, context);
  }
  const rel = relative(realDir, realPath);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
    throw new RefusedError(`${path} resolves to ${realPath}, outside the bundle`, { ...context, path });
  }
  try {
    return readRegularFileSync(realPath, maxBytes, path, constants.O_RDONLY | constants.O_NOFOLLOW, context);
  } catch (error) {
    if (error instanceof InputError) throw error;
    throw systemError('cannot read', path, error, context);
  }
}
