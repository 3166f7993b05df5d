import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isSystemdContainer } from '../../lib/policy';
import type { Spec } from '../../lib/spec';

const spec = (args: string[], annotations?: Record<string, string>): Spec => ({ ociVersion: '1.0.2', process: { cwd: '/', args }, annotations });

const systemd = suite('isSystemdContainer');
systemd('by command, as hooks.d matches it', () => {
  for (const cmd of ['/sbin/init', '/usr/lib/systemd/systemd', 'init', 'systemd']) assert.ok(isSystemdContainer(spec([cmd])), cmd);
  for (const cmd of ['/bin/sh', '/sbin/tini', '/usr/bin/dumb-init', '/sbin/initctl', '']) assert.not.ok(isSystemdContainer(spec([cmd])), cmd);
});
systemd('the annotation wins over the command', () => {
  assert.ok(isSystemdContainer(spec(['/bin/myapp'], { 'io.oci-userns.systemd': 'true' })));
  assert.not.ok(isSystemdContainer(spec(['/sbin/init'], { 'io.oci-userns.systemd': 'false' })));
});
systemd.run();
