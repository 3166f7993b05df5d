// The container state a runtime hands a hook on stdin (OCI runtime spec,
// runtime.md "State"), parsed and validated against schemas/state.schema.json.

import { parseValidated } from './json';

export type ContainerStatus = 'creating' | 'created' | 'running' | 'stopped';

export interface ContainerState {
  ociVersion: string;
  id: string;
  status: ContainerStatus;
  /** Absent or 0 once the container has stopped (runc and crun differ). */
  pid?: number;
  bundle: string;
  annotations?: Record<string, string>;
}

export function parseState(text: string): ContainerState {
  return parseValidated<ContainerState>(text, 'state', 'state on stdin');
}
