// The hooks.d definitions in hooks/: valid files, and the `when` design:
// systemd containers (by command) and annotated containers (by
// io.oci-userns.enable=true) get the hook exactly once per stage, every
// other container never starts it.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { schemaProblem } from '../../lib/oci/schemas';

interface HookFile {
  version: string;
  hook: { path: string; args: string[]; env: string[]; timeout: number };
  when: { annotations?: Record<string, string>; commands?: string[]; always?: boolean; hasBindMounts?: boolean };
  stages: string[];
}

const dir = join(import.meta.dirname, '..', '..', 'hooks');
const files = readdirSync(dir)
  .filter((name) => name.endsWith('.json'))
  .sort()
  .map((name) => ({ name, def: JSON.parse(readFileSync(join(dir, name), 'utf8')) as HookFile }));

// containers/common pkg/hooks/1.0.0 When.Match: every condition that is set
// must hold; regexes are Go regexp.MatchString, an unanchored search (the
// patterns used here mean the same in RE2 and JavaScript).
function matches(when: HookFile['when'], command: string, annotations: Record<string, string>): boolean {
  if (when.always === false) return false;
  if (when.hasBindMounts !== undefined) return false;
  for (const [keyPattern, valuePattern] of Object.entries(when.annotations ?? {})) {
    const found = Object.entries(annotations).some(([k, v]) => new RegExp(keyPattern).test(k) && new RegExp(valuePattern).test(v));
    if (!found) return false;
  }
  if (when.commands && !when.commands.some((pattern) => new RegExp(pattern).test(command))) return false;
  return true;
}

/** The stages for which a container gets our hook, one entry per injected hook. */
function injected(command: string, annotations: Record<string, string> = {}): string[] {
  return files.filter((f) => matches(f.def.when, command, annotations)).flatMap((f) => f.def.stages);
}

const isSystemdCommand = (command: string) => /(^|\/)(init|systemd)$/.test(command);
const ENABLE = { 'io.oci-userns.enable': 'true' };

const defs = suite('hooks.d files: valid 1.0.0 definitions, one stage each');
defs('there are the four definitions', () => {
  assert.equal(
    files.map((f) => f.name),
    ['oci-userns-annotation-createruntime.json', 'oci-userns-annotation-poststop.json', 'oci-userns-systemd-createruntime.json', 'oci-userns-systemd-poststop.json'],
  );
});
defs('each validates against the hooks schema', () => {
  for (const { name, def } of files) assert.is(schemaProblem('hooks', def), undefined, name);
});
defs('each has exactly one stage, and passes that stage to `oci-userns hook`', () => {
  for (const { name, def } of files) {
    assert.is(def.stages.length, 1, name);
    assert.equal(def.hook.args.slice(1), ['hook', def.stages[0]], name);
    assert.ok(['createRuntime', 'poststop'].includes(def.stages[0]!), name);
  }
});
defs('the hook gets a PATH of its own (runtimes pass only the definition env) and a timeout', () => {
  for (const { name, def } of files) {
    assert.ok(def.hook.env.some((e) => e.startsWith('PATH=/')), name);
    assert.ok(def.hook.timeout > 0, name);
  }
});
defs.run();

const when = suite('hooks.d when: who gets the hook');
when('systemd containers get createRuntime and poststop once, with or without the annotation', () => {
  for (const command of ['/sbin/init', '/usr/sbin/init', 'init', '/lib/systemd/systemd', '/usr/lib/systemd/systemd', 'systemd']) {
    assert.equal(injected(command), ['createRuntime', 'poststop'], command);
    assert.equal(injected(command, ENABLE), ['createRuntime', 'poststop'], `${command} annotated`);
  }
});
when('other containers never start the hook', () => {
  for (const command of ['/bin/sh', 'sh', '/usr/bin/tini', '/dumb-init', '/docker-init', '/sbin/initctl', '/usr/bin/systemd-run', '/init/x', 'sleep', '', 'systemdx', 'xinit']) {
    assert.equal(injected(command), [], command);
  }
});
when('annotated non-systemd containers get createRuntime and poststop once', () => {
  for (const command of ['/bin/sh', '/usr/bin/tini', '/sbin/initctl', 'sleep', '/entrypoint.sh']) {
    assert.equal(injected(command, ENABLE), ['createRuntime', 'poststop'], command);
    assert.equal(injected(command, { ...ENABLE, 'io.other': 'x' }), ['createRuntime', 'poststop'], command);
  }
});
when('only the exact annotation key and value "true" opt in', () => {
  const cases: Record<string, string>[] = [
    { 'io.oci-userns.enable': 'false' },
    { 'io.oci-userns.enable': 'TRUE' },
    { 'io.oci-userns.enable': 'true ' },
    { 'io.oci-userns.enabled': 'true' },
    { 'x.io.oci-userns.enable': 'true' },
    { 'ioXoci-userns.enable': 'true' },
  ];
  for (const annotations of cases) {
    assert.equal(injected('/bin/sh', annotations), [], JSON.stringify(annotations));
  }
});
when('the annotation files match exactly the commands the systemd files do not (no double start)', () => {
  const fragments = ['', '/', 'x', 'i', 'in', 'ini', 'init', 'initx', 's', 'sy', 'sys', 'syst', 'syste', 'system', 'systemd', 'systemdx', 'is', 'si', 'd', 't'];
  const annotated = files.filter((f) => f.name.includes('annotation'));
  for (const a of fragments) {
    for (const b of fragments) {
      for (const c of fragments) {
        const command = a + b + c;
        for (const f of annotated) {
          assert.is(f.def.when.commands!.some((p) => new RegExp(p).test(command)), !isSystemdCommand(command), command);
        }
      }
    }
  }
});
when.run();
