import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { IDENTITY, parseIdMap, toContainer, toHost } from '../../lib/oci/idmap';
import { lookupRule, planSteps, ruleTable, sideRule, stepIsSafe } from '../../lib/shift/plan';

const R1 = parseIdMap('0:100000:65536');
const R2 = parseIdMap('0:300000:65536');
const NEAR = parseIdMap('0:130000:65536');

const rule = suite('sideRule: one id tells its own state');
rule('first shift from host ownership', () => {
  const r = sideRule(IDENTITY, R1, 'error');
  assert.is(r.map(0), 100000);
  assert.is(r.map(1000), 101000);
  assert.is(r.map(101000), 101000, 'an id already in the target range is done');
  assert.ok(r.done(165535));
  assert.is(r.map(70000), undefined, 'outside the mapping under the error policy');
  assert.is(sideRule(IDENTITY, R1, 'overflow').map(70000), 165534);
});
rule('range to range, and back to the original', () => {
  const r = sideRule(R1, R2, 'error');
  assert.is(r.map(100005), 300005);
  assert.is(r.map(300005), 300005);
  assert.is(r.map(5), undefined);
  assert.is(sideRule(R1, IDENTITY, 'error').map(100005), 5);
  assert.is(sideRule(R1, IDENTITY, 'error').map(5), 5);
});
rule('the table the walker threads get gives done ids back and moves source ids through the container id', () => {
  const from = parseIdMap('0:100000:1000,1000:200000:64536');
  const to = parseIdMap('0:300000:500,500:400000:65036');
  const table = ruleTable(from, to);
  for (const id of [0, 99999, 100000, 100499, 100500, 100999, 101000, 200000, 264535, 264536, 300000, 300499, 400000, 465035, 465036]) {
    const c = toContainer(from, id);
    const moved = c === undefined ? undefined : toHost(to, c);
    const done = toContainer(to, id) !== undefined;
    assert.is(lookupRule(table, id), done ? id : moved, `id ${id}`);
  }
});
rule.run();

const plan = suite('planSteps keeps source and target ids apart');
plan('disjoint ranges take one step', () => {
  assert.is(planSteps({ uid: IDENTITY, gid: IDENTITY }, { uid: R1, gid: R1 }).length, 1);
  assert.is(planSteps({ uid: R1, gid: R1 }, { uid: R2, gid: R2 }).length, 1);
});
plan('overlapping ranges go through a free range, each step safe', () => {
  assert.not.ok(stepIsSafe(R1, NEAR));
  const steps = planSteps({ uid: R1, gid: R1 }, { uid: NEAR, gid: NEAR });
  assert.is(steps.length, 2);
  for (const s of steps) assert.ok(stepIsSafe(s.uid.from, s.uid.to) && stepIsSafe(s.gid.from, s.gid.to));
  assert.equal(steps[1]!.uid.to, NEAR);
  const via = steps[0]!.uid.to;
  assert.is(sideRule(via, NEAR, 'error').map(sideRule(R1, via, 'error').map(100007)!), 130007);
});
plan('a target overlapping host ids the tree has now (from identity)', () => {
  const low = parseIdMap('0:1000:65536');
  const steps = planSteps({ uid: IDENTITY, gid: IDENTITY }, { uid: low, gid: low });
  assert.is(steps.length, 2);
});
plan.run();
