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
    child.on('close', (code) => {
      const plain = output.replace(/\x1b\[[0-9;]*m/g, '');
      const count = (label) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(plain)?.[1] ?? 0);
      const total = count('Total');
      const passed = count('Passed');
      const skipped = count('Skipped');
      // uvu's Total counts the tests that ran, not the skipped ones; it exits
      // early without a summary when a test throws outside an assertion.
      const failed = code === 0 ? total - passed : Math.max(1, total - passed);
      resolve({ passed, failed, skipped, code });
    });
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
  if (result.code !== 0) status = 1;
}
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exitCode = status;
