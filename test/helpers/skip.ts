// Tests that cannot run here are counted as skipped, never as passed: the
// suite prints "SKIPPED <suite>: <why>" once and registers each of its
// tests with uvu's skip, and its hooks (which would need what is missing)
// do not run.

import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import type { Test } from 'uvu';
import { errnoCode } from '../../lib/errors';
import { DEFAULT_STORAGE_ROOTS } from '../../lib/ranges/userns-scan';

export function hasTool(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why tests that chown or mount cannot run here (not root, or tools missing), or undefined. */
export function rootSkipReason(tools: readonly string[] = []): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  const missing = tools.filter((tool) => !hasTool(tool));
  return missing.length > 0 ? `needs ${missing.join(', ')}` : undefined;
}

/**
 * Why tests that allocate through the CLI or the shim (which scan the
 * default containers/storage roots, lib/ranges/userns-scan.ts, and refuse to
 * allocate when they cannot) cannot run here, or undefined.
 */
export function storageSkipReason(): string | undefined {
  const blocked = DEFAULT_STORAGE_ROOTS.filter((root) => {
    try {
      readdirSync(root);
      return false;
    } catch (error) {
      return !['ENOENT', 'ENOTDIR'].includes(errnoCode(error) ?? '');
    }
  });
  return blocked.length > 0 ? `the host-wide range scan must list ${blocked.join(', ')}, which uid ${process.getuid?.()} cannot read` : undefined;
}

/** The suite itself, or when `reason` is set one whose tests are all registered as skipped and whose hooks never run. */
export function skippedUnless<T>(test: Test<T>, label: string, reason: string | undefined): Test<T> {
  if (reason === undefined) return test;
  console.log(`SKIPPED ${label}: ${reason}`);
  const noHook = Object.assign(() => {}, { each: () => {} });
  return Object.assign((name: string) => test.skip(name), { only: (name: string) => test.skip(name), skip: test.skip, before: noHook, after: noHook, run: () => test.run() });
}
