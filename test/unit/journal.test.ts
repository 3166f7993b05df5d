import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal } from '../../lib/shift/journal';

const test = suite('shift journal');
let dir = '';
let path = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-userns-journal-'));
  path = join(dir, 'k.journal');
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

test('records appended for a step are read back on resume, merged per path', () => {
  const journal = Journal.create(path, 1);
  journal.append([{ path: '/r/ping', cap: '0100' }, { path: '/r/su', mode: 0o4755 }]);
  journal.append([{ path: '/r/ping', mode: 0o2755 }]);
  journal.append([]);
  journal.close();
  const { journal: again, records } = Journal.resume(path, 1);
  again.close();
  assert.equal(records.get('/r/ping'), { path: '/r/ping', cap: '0100', mode: 0o2755 });
  assert.equal(records.get('/r/su'), { path: '/r/su', mode: 0o4755 });
  assert.is(records.size, 2);
});

test('a last line cut short by a kill is dropped (its chown never ran); appends go on after it', () => {
  const journal = Journal.create(path, 0);
  journal.append([{ path: '/r/a', mode: 0o4755 }]);
  journal.close();
  appendFileSync(path, '{"path":"/r/b","ca');
  const { journal: again, records } = Journal.resume(path, 0);
  again.close();
  assert.equal([...records.keys()], ['/r/a']);
});

test("another step's journal, a header cut short, or none at all: a fresh journal for this step", () => {
  Journal.create(path, 0).append([{ path: '/r/a', mode: 0o4755 }]);
  for (const prepare of [() => {}, () => writeFileSync(path, '{"st'), () => rmSync(path)]) {
    prepare();
    const { journal, records } = Journal.resume(path, 1);
    journal.close();
    assert.is(records.size, 0);
    assert.is(readFileSync(path, 'utf8'), '{"step":1}\n');
  }
});

test('remove closes and deletes it', () => {
  Journal.create(path, 0).remove();
  assert.not.ok(existsSync(path));
});

test.run();
