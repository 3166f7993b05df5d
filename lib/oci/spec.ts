// The container's config.json (OCI runtime spec, config.md and
// config-linux.md): reading it from the bundle and the questions oci-userns
// asks of it. Only the fields oci-userns uses are typed; the rest is kept.

import { isAbsolute, resolve } from 'node:path';
import type { IdMapping } from './idmap';
import { readFileInside } from './input';
import { parseValidated } from './json';

export interface SpecHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export type HookStageName = 'prestart' | 'createRuntime' | 'createContainer' | 'startContainer' | 'poststart' | 'poststop';

export interface SpecMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
  [key: string]: unknown;
}

export interface SpecNamespace {
  type: string;
  path?: string;
}

export interface Spec {
  ociVersion: string;
  root?: { path: string; readonly?: boolean };
  process?: {
    terminal?: boolean;
    cwd: string;
    args?: string[];
    env?: string[];
    user?: { uid: number; gid: number; [key: string]: unknown };
    [key: string]: unknown;
  };
  mounts?: SpecMount[];
  hooks?: Partial<Record<HookStageName, SpecHook[]>>;
  annotations?: Record<string, string>;
  linux?: {
    namespaces?: SpecNamespace[];
    uidMappings?: IdMapping[];
    gidMappings?: IdMapping[];
    cgroupsPath?: string;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export async function readSpec(bundle: string, maxBytes: number, containerId?: string): Promise<Spec> {
  const text = (readFileInside(bundle, 'config.json', maxBytes, { containerId })).toString('utf8');
  return parseValidated<Spec>(text, 'config', `${bundle}/config.json`, { containerId, path: `${bundle}/config.json` });
}

export function hasNamespace(spec: Spec, type: string): boolean {
  return (spec.linux?.namespaces ?? []).some((ns) => ns.type === type);
}

export function hasUserNamespace(spec: Spec): boolean {
  return hasNamespace(spec, 'user');
}

/**
 * The container's mappings. A spec that joins an existing user namespace by
 * path carries no mappings; the caller reads them from the process then.
 */
export function specMappings(spec: Spec): { uidMappings: IdMapping[]; gidMappings: IdMapping[] } {
  return { uidMappings: spec.linux?.uidMappings ?? [], gidMappings: spec.linux?.gidMappings ?? [] };
}

/** Absolute path of the rootfs; root.path is relative to the bundle unless absolute. */
export function rootfsPath(spec: Spec, bundle: string): string | undefined {
  const path = spec.root?.path;
  if (path === undefined) return undefined;
  return isAbsolute(path) ? path : resolve(bundle, path);
}

/** The container process's uid and gid; 0:0 when the spec does not say. */
export function processUser(spec: Spec): { uid: number; gid: number } {
  return { uid: spec.process?.user?.uid ?? 0, gid: spec.process?.user?.gid ?? 0 };
}
