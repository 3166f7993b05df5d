// Runs the test suites with uvu (TypeScript through tsx): the unit tests,
// then the end-to-end tests against real runtimes. Prints one closing line,
// "N passed, N failed, N skipped", and exits non-zero on any failure.
// Usage: node scripts/test.mjs [unit|e2e] [file pattern]
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [only, pattern] = process.argv.slice(2);
const groups = only ? [only] : ['unit', 'e2e'];
const uvu = join(root, 'node_modules', 'uvu', 'bin.js');

/**
 * The counts of one uvu run from its output and exit code. uvu 0.5's Total
 * counts the tests that ran, not the skipped ones. A suite whose before
 * hook throws ends "(0 / N)" with no error and exit code 0: its N tests
 * count as failed here. A run that stops early (a file that throws on
 * import, a test whose promise never settles) prints no summary: the
 * "(passed / ran)" lines of the suites that finished give what ran, plus
 * one failure for the stop.
 */
function counts(output, code) {
  const plain = output.replace(/\x1b\[[0-9;]*m/g, '');
  const summary = /Total:\s+(\d+)\s+Passed:\s+(\d+)\s+Skipped:\s+(\d+)/.exec(plain);
  if (summary) {
    const [total, passed, skipped] = summary.slice(1).map(Number);
    return { passed, failed: total - passed, skipped, code };
  }
  let passed = 0;
  let failed = 1;
  for (const [, done, ran] of plain.matchAll(/\((\d+) \/ (\d+)\)\n/g)) {
    passed += Number(done);
    failed += Number(ran) - Number(done);
  }
  return { passed, failed, skipped: 0, code: code || 1 };
}

function runGroup(group) {
  return new Promise((resolve) => {
    const args = ['--import', 'tsx', uvu, join('test', group)];
    if (pattern) args.push(pattern);
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      output += chunk.toString();
    });
    child.on('close', (code) => resolve(counts(output, code)));
  });
}

let passed = 0;
let failed = 0;
let skipped = 0;
let status = 0;
for (const group of groups) {
  process.stdout.write(`\n== ${group} tests\n`);
  const result = await runGroup(group);
  passed += result.passed;
  failed += result.failed;
  skipped += result.skipped;
  if (result.code !== 0 || result.failed > 0) status = 1;
}
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exitCode = status;
