// Runs the test suite with Node's own runner. Node 20 has no --test globs, so the files are listed here.
// --test-force-exit: a test file that leaves a handle open (a stray connection) fails loudly elsewhere instead
// of hanging CI; --test-timeout bounds any one test.
// Usage: node scripts/test.mjs [folder ...]   (default: every folder under test/ except support/)
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../test/', import.meta.url).pathname;
const folders = process.argv.slice(2);
const files = [];
function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) {
      if (name !== 'support') walk(full);
    } else if (name.endsWith('.test.ts')) files.push(full);
  }
}
for (const folder of folders.length ? folders : readdirSync(root)) {
  try {
    if (statSync(join(root, folder)).isDirectory() && folder !== 'support') walk(join(root, folder));
  } catch {}
}
const result = spawnSync(
  process.execPath,
  ['--conditions=development', '--import', 'tsx', '--test', '--test-concurrency=1', '--test-force-exit', '--test-timeout=300000', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
