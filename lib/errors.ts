// The few error classes of oci-userns. Each carries one sentence for the
// user (what failed, where, and what to do) and maps to a stable exit code
// that the CLI and the hook entry turn into the process status.

export interface ErrorContext {
  /** Container id the error is about, when there is one. */
  containerId?: string;
  /** File or directory the error is about, when there is one. */
  path?: string;
  /** What the user can do about it. Appended to the message. */
  hint?: string;
  /** Underlying error, kept for the log, never printed on stderr. */
  cause?: unknown;
}

export abstract class UsernsError extends Error {
  abstract readonly exitCode: number;
  readonly containerId?: string;
  readonly path?: string;
  readonly hint?: string;

  constructor(message: string, context: ErrorContext = {}) {
    super(context.hint ? `${message}; ${context.hint}` : message, { cause: context.cause });
    this.name = new.target.name;
    this.containerId = context.containerId;
    this.path = context.path;
    this.hint = context.hint;
  }
}

/** The input (state, config.json, arguments, a file given by the user) is malformed. */
export class InputError extends UsernsError {
  readonly exitCode = 2;
}

/** oci-userns's own configuration file is invalid. */
export class ConfigError extends UsernsError {
  readonly exitCode = 3;
}

/** The host lacks something this work needs (cgroup v2, subuid entries, a tool). */
export class HostError extends UsernsError {
  readonly exitCode = 4;
}

/** The request is well formed but unsafe, so it was refused and nothing changed. */
export class RefusedError extends UsernsError {
  readonly exitCode = 5;
}

/** A system call or a child process failed. */
export class SystemError extends UsernsError {
  readonly exitCode = 6;
}

/** Exit code for a bug: an error that is not one of ours. */
export const INTERNAL_EXIT_CODE = 70;

/** One of ours (its message is for the user), not a bug. The build keeps one copy of this module for all its files (scripts/build.mjs). */
export function isUsernsError(error: unknown): error is UsernsError {
  return error instanceof UsernsError;
}

/**
 * The container's process exited while a hook was setting it up (killed, or
 * its start failed meanwhile): a race on the host, not bad input. Exit 4.
 */
export function containerProcessGone(pid: number, containerId: string | undefined, cause: unknown): HostError {
  return new HostError(`container process ${pid} exited while the hook was setting it up (the container was killed or its start failed meanwhile)`, {
    containerId,
    cause,
    hint: 'start the container again',
  });
}

/** The errno code of a Node.js system error, or undefined. */
export function errnoCode(error: unknown): string | undefined {
  if (error && typeof error === 'object' && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return undefined;
}

/**
 * Wraps a failed system call in a SystemError that names the operation and
 * the path, keeping the errno code (ENOENT, EACCES, ...) in the message.
 */
export function systemError(operation: string, path: string, cause: unknown, context: ErrorContext = {}): SystemError {
  const code = errnoCode(cause) ?? (cause instanceof Error ? cause.message : String(cause));
  return new SystemError(`${operation} ${path}: ${code}`, { path, cause, ...context });
}
