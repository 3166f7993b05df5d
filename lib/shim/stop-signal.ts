// Stopping a systemd container: systemd as PID 1 ignores SIGTERM and shuts
// down on SIGRTMIN+3 (systemd(1), "Signals"), which podman's systemd mode
// sends. containerd and kubelet send SIGTERM (`runc kill ID 15`), then
// wait the whole grace period before SIGKILL. The shim turns that SIGTERM
// into SIGRTMIN+3 for a container it marked as systemd at create.

import { execFile } from 'node:child_process';
import { SYSTEMD_ANNOTATION } from '../oci/policy';
import type { RuntimeArgs } from './args';

/** SIGRTMIN+3 as a number: glibc's SIGRTMIN is 34 on Linux (signal(7)); runc and crun take numbers. */
export const SYSTEMD_STOP_SIGNAL = '37';

const TERM_NAMES = new Set(['15', 'TERM', 'SIGTERM']);

/**
 * For `kill ID [SIGNAL]` (SIGNAL absent means SIGTERM, as runc and crun
 * read it) without --all: the container id, and where the signal is in
 * argv (-1 when absent). Undefined for anything else, including other
 * signals. Pure.
 */
export function termKill(args: RuntimeArgs, argv: readonly string[]): { id: string; signalIndex: number } | undefined {
  if (args.command !== 'kill' || args.options.all !== undefined || args.unknown.length > 0) return undefined;
  const [id, signal, ...rest] = args.positionals;
  if (id === undefined || rest.length > 0) return undefined;
  if (signal === undefined) return { id, signalIndex: -1 };
  if (!TERM_NAMES.has(signal.toUpperCase())) return undefined;
  return { id, signalIndex: argv.lastIndexOf(signal) };
}

/** argv with SIGRTMIN+3 in place of the SIGTERM termKill found. Pure. */
export function withSystemdStopSignal(argv: readonly string[], signalIndex: number): string[] {
  if (signalIndex === -1) return [...argv, SYSTEMD_STOP_SIGNAL];
  return argv.map((arg, i) => (i === signalIndex ? SYSTEMD_STOP_SIGNAL : arg));
}

/** The runtime's `state` of a container (its annotations among others), with the engine's global options; undefined when it fails. */
function runtimeState(runtime: string, globals: readonly string[], id: string): Promise<{ annotations?: Record<string, string> } | undefined> {
  return new Promise((resolve) => {
    execFile(runtime, [...globals, 'state', id], { timeout: 10_000, maxBuffer: 4 * 1024 * 1024 }, (error, stdout) => {
      if (error) return resolve(undefined);
      try {
        resolve(JSON.parse(stdout));
      } catch {
        resolve(undefined);
      }
    });
  });
}

/**
 * The argv to hand the runtime for `kill`: SIGTERM becomes SIGRTMIN+3
 * when the container's annotations mark it as systemd (the shim sets
 * io.oci-userns.systemd=true at create). Anything else, or a container
 * the runtime cannot tell about, keeps the engine's argv.
 */
export async function killArgv(opts: { runtime: string; argv: readonly string[]; args: RuntimeArgs }): Promise<readonly string[]> {
  const kill = termKill(opts.args, opts.argv);
  if (kill === undefined) return opts.argv;
  const globals = opts.argv.slice(0, opts.argv.indexOf('kill'));
  const state = await runtimeState(opts.runtime, globals, kill.id);
  return state?.annotations?.[SYSTEMD_ANNOTATION] === 'true' ? withSystemdStopSignal(opts.argv, kill.signalIndex) : opts.argv;
}
