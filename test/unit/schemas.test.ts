import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { schemaProblem } from '../../lib/oci/schemas';
import { parseState } from '../../lib/oci/state';
import { InputError } from '../../lib/errors';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const load = (name: string) => JSON.parse(readFileSync(join(fixtures, name), 'utf8'));

const real = suite('every real runtime input is accepted');
for (const name of readdirSync(fixtures).filter((n) => n.startsWith('state-'))) {
  real(name, () => {
    assert.is(schemaProblem('state', load(name)), undefined);
  });
}
for (const name of readdirSync(fixtures).filter((n) => n.startsWith('config-'))) {
  real(name, () => {
    assert.is(schemaProblem('config', load(name)), undefined);
  });
}
real.run();

const state = suite('the state schema rejects what the runtime spec forbids');
const good = { ociVersion: '1.0.2', id: 'c1', status: 'created', pid: 42, bundle: '/b' };
const rejects = (value: unknown, pattern: RegExp) => {
  const problem = schemaProblem('state', value);
  assert.ok(problem, `expected a problem for ${JSON.stringify(value)}`);
  assert.match(problem!, pattern);
};
state('missing id or bundle', () => {
  const { id: _id, ...noId } = good;
  const { bundle: _bundle, ...noBundle } = good;
  rejects(noId, /missing required key 'id'/);
  rejects(noBundle, /missing required key 'bundle'/);
});
state('wrong types', () => {
  rejects({ ...good, pid: '42' }, /'pid' must be integer/);
  rejects({ ...good, id: 7 }, /'id' must be string/);
  rejects({ ...good, annotations: { a: 1 } }, /'annotations.a' must be string/);
});
state('unknown status, relative bundle, empty id, bad version', () => {
  rejects({ ...good, status: 'paused' }, /'status' must be one of/);
  rejects({ ...good, bundle: 'relative/dir' }, /'bundle' must match/);
  rejects({ ...good, id: '' }, /'id' must match/);
  rejects({ ...good, ociVersion: 'one' }, /'ociVersion' must match/);
});
state('created and running need a pid; stopped does not', () => {
  const { pid: _pid, ...noPid } = good;
  rejects(noPid, /missing required key 'pid'/);
  rejects({ ...good, status: 'running', pid: 0 }, /'pid' must be >= 1/);
  assert.is(schemaProblem('state', { ...noPid, status: 'stopped' }), undefined);
  assert.is(schemaProblem('state', { ...good, status: 'stopped', pid: 0 }), undefined);
});
state("the shape comes before the pid rule: an old runtime's 'bundlePath' state is missing 'bundle', not a pid problem", () => {
  const { bundle: _bundle, ...noBundle } = good;
  rejects({ ...noBundle, status: 'running', pid: 0, bundlePath: '/b' }, /^missing required key 'bundle' \(the state has 'bundlePath', its name before runtime-spec 1\.0\.0/);
  rejects({ ...noBundle, status: 'created', bundlePath: '/b' }, /^missing required key 'bundle'/);
});
state.run();

const config = suite('the config.json schema checks the fields oci-userns relies on');
const spec = load('config-runc-spec-userns.json');
config('bad mappings and namespaces', () => {
  const withMap = (m: unknown) => ({ ...spec, linux: { ...spec.linux, uidMappings: m } });
  assert.match(schemaProblem('config', withMap([{ containerID: 0, hostID: 1 }]))!, /missing required key 'linux.uidMappings\[0\].size'/);
  assert.match(schemaProblem('config', withMap([{ containerID: 0, hostID: -1, size: 1 }]))!, /'linux.uidMappings\[0\].hostID' must be >= 0/);
  assert.match(schemaProblem('config', withMap([{ containerID: 0, hostID: 1, size: 0 }]))!, /size' must be >= 1/);
  assert.match(schemaProblem('config', { ...spec, linux: { namespaces: [{ type: 'users' }] } })!, /'linux.namespaces\[0\].type' must be one of/);
});
config('ociVersion is required, hook paths are absolute', () => {
  const { ociVersion: _v, ...noVersion } = spec;
  assert.match(schemaProblem('config', noVersion)!, /missing required key 'ociVersion'/);
  assert.match(schemaProblem('config', { ...spec, hooks: { poststop: [{ path: 'rel' }] } })!, /'hooks.poststop\[0\].path' must match/);
});
config.run();

const parse = suite('parseState explains malformed stdin');
const failsWith = (text: string, pattern: RegExp) =>
  assert.throws(
    () => parseState(text),
    (e: unknown) => e instanceof InputError && pattern.test(e.message),
  );
parse('empty, not JSON, truncated, not an object', () => {
  failsWith('', /state on stdin is empty/);
  failsWith('  \n', /state on stdin is empty/);
  failsWith('hello', /state on stdin is not valid JSON/);
  failsWith('{"ociVersion": "1.0.2", "id": "x"', /state on stdin is truncated JSON/);
  failsWith('{\n', /state on stdin is truncated JSON/);
  failsWith('[1,2]', /must be a JSON object/);
});
parse('a valid state is returned as is', () => {
  const text = readFileSync(join(fixtures, 'state-crun1.8.1-createRuntime.json'), 'utf8');
  assert.equal(parseState(text), JSON.parse(text));
});
parse.run();

const hooksFile = suite('the hooks.d schema (containers 1.0.0)');
const hook = { version: '1.0.0', hook: { path: '/usr/bin/oci-userns', args: ['oci-userns', 'hook', 'createRuntime'] }, when: { commands: ['.*/init$'] }, stages: ['createRuntime'] };
hooksFile('accepts a well-formed definition', () => {
  assert.is(schemaProblem('hooks', hook), undefined);
});
hooksFile('rejects an empty when, a wrong version, an unknown stage', () => {
  assert.match(schemaProblem('hooks', { ...hook, when: {} })!, /must NOT have fewer than 1 properties/);
  assert.match(schemaProblem('hooks', { ...hook, version: '0.1.0' })!, /'version' must be "1.0.0"/);
  assert.match(schemaProblem('hooks', { ...hook, stages: ['prestop'] })!, /'stages\[0\]' must be one of/);
  assert.match(schemaProblem('hooks', { ...hook, when: { command: ['x'] } })!, /unknown key 'when.command'/);
});
hooksFile.run();
