import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { escapePath, formatDump, parseDump, unescapePath } from '../../lib/shift/xattr';

const dump = suite('getfattr dump text');
dump('parses files, names and hex values, undoing \\ooo escapes', () => {
  const text = '# file: /r/a b\nsecurity.capability=0x0100\n\n# file: /r/n\\012l\\134x\\303\\251\nsystem.posix_acl_access=0x02000000\nuser.s="text"\n\n';
  const parsed = parseDump(text);
  assert.equal([...parsed.keys()], ['/r/a b', '/r/n\nl\\xé']);
  assert.equal(parsed.get('/r/a b')!.get('security.capability')!.toString('hex'), '0100');
  assert.equal([...parsed.get('/r/n\nl\\xé')!.keys()], ['system.posix_acl_access']);
});
dump('escape and unescape are inverse, and format parses back', () => {
  for (const p of ['/plain', '/sp ace', '/nl\nx', '/back\\slash', '/é', '/tab\t']) assert.is(unescapePath(escapePath(p)), p);
  const entries: Array<[string, Map<string, Buffer>]> = [['/a\nb', new Map([['security.capability', Buffer.from('0102', 'hex')]])]];
  assert.equal([...parseDump(formatDump(entries))].map(([p, m]) => [p, [...m].map(([n, v]) => [n, v.toString('hex')])]), [['/a\nb', [['security.capability', '0102']]]]);
});
dump.run();
