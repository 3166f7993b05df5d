import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { displayPath, fsPath, keyOfBytes, pathBytes } from '../../lib/sys/path-key';
import { escapePath, parseDump, unescapePath } from '../../lib/shift/xattr';

const keys = suite('path keys: every byte of a name survives');
const latin1Name = Buffer.concat([Buffer.from('/r/caf'), Buffer.from([0xe9]), Buffer.from('/x')]);

keys('a UTF-8 path is its own key and its own fs path', () => {
  const key = keyOfBytes(Buffer.from('/r/café/x', 'utf8'));
  assert.is(key, '/r/café/x');
  assert.is(fsPath(key), '/r/café/x');
  assert.is(displayPath(key), '/r/café/x');
});

keys('a path that is not UTF-8 keeps its bytes, for fs calls and back', () => {
  const key = keyOfBytes(latin1Name);
  assert.is(key.charCodeAt(0), 0);
  assert.ok(Buffer.isBuffer(fsPath(key)));
  assert.ok((fsPath(key) as Buffer).equals(latin1Name));
  assert.ok(pathBytes(key).equals(latin1Name));
  assert.is(displayPath(key), '/r/caf\\351/x');
});

keys('getfattr escapes of such a path parse to the same key, and escape back', () => {
  const key = keyOfBytes(latin1Name);
  assert.is(unescapePath('/r/caf\\351/x'), key);
  assert.is(escapePath(key), '/r/caf\\351/x');
  assert.equal([...parseDump('# file: /r/caf\\351/x\nsecurity.capability=0x01\n\n').keys()], [key]);
  assert.is(unescapePath('/r/caf\\303\\251/x'), '/r/café/x');
});

keys.run();
