// The README's "A short tour", run as a newcomer would run it: every code block of the section, in order and as
// printed, in a fresh project of their own that has Fennel installed (node_modules/fennel is this repository,
// built, as `npm install` would leave it). TypeScript blocks whose first line names a file (`// tasks.ts`) are
// written to that file; every line of a `sh` block is run by bash in the project (`npx fennel worker …` in the
// background, until it says it is ready; anything else to its end, which must be exit 0). What each command
// printed is then checked against what the README says it prints. The section on the cache runs the same way, after
// the tour, in the same project.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT, track, watchLines, type RunningWorker } from '../support/process.ts';

interface Block {
  lang: string;
  lines: string[];
}

/** The fenced code blocks of one `## ` section of the README, in order. */
function sectionBlocks(markdown: string, heading: string): Block[] {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `README has a section '## ${heading}'`);
  const end = markdown.indexOf('\n## ', start + 1);
  const section = markdown.slice(start, end < 0 ? undefined : end);
  const blocks: Block[] = [];
  for (const match of section.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)) blocks.push({ lang: match[1]!, lines: match[2]!.replace(/\n$/, '').split('\n') });
  return blocks;
}

/** A shell line without its trailing `# comment` (a `#` after whitespace, outside quotes: the README's lines have none inside). */
function command(line: string): string {
  return line.replace(/\s+#.*$/, '').trim();
}

/** True if any file under `dir` was modified after `time`. */
function newerThan(dir: string, time: number): boolean {
  return readdirSync(dir).some((name) => {
    const full = join(dir, name);
    const stat = statSync(full);
    return stat.isDirectory() ? newerThan(full, time) : stat.mtimeMs > time;
  });
}

const project = mkdtempSync(join(tmpdir(), 'fennel-tour-'));
// The environment of a newcomer's shell: no Fennel settings, the project's node_modules/.bin on PATH via npx.
const env: Record<string, string> = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FENNEL_') || key === 'FENNEL_TEST_FILE')) as Record<string, string>;
const background: RunningWorker[] = [];

function runInBackground(line: string): RunningWorker {
  // In a process group of its own, as a shell runs a job: stopping it (a terminal's Ctrl-C) reaches npx and the worker under it.
  const child = track(spawn('bash', ['-c', `exec ${line}`], { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true }), true);
  return watchLines(child);
}

function runToEnd(line: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = track(spawn('bash', ['-c', line], { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`'${line}' did not finish within 120 s:\n${stdout}${stderr}`));
    }, 120_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs every block of a README section in the project, as a newcomer would; what each foreground command printed. */
async function runSection(heading: string): Promise<Map<string, string>> {
  const blocks = sectionBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'), heading);
  const outputs = new Map<string, string>();
  for (const block of blocks) {
    if (block.lang === 'ts') {
      const name = /^\/\/ ([\w.-]+\.ts)(:|$)/.exec(block.lines[0]!)?.[1];
      assert.ok(name, `a ts block of '${heading}' starts with the name of its file:\n${block.lines.join('\n')}`);
      writeFileSync(join(project, name), `${block.lines.join('\n')}\n`);
      continue;
    }
    assert.equal(block.lang, 'sh', `'${heading}' has only ts and sh blocks (got '${block.lang}')`);
    for (const line of block.lines.map(command).filter(Boolean)) {
      if (line.startsWith('npx fennel worker')) {
        const worker = runInBackground(line);
        background.push(worker);
        await worker.waitForLine(/worker ready/, 60_000);
        continue;
      }
      const run = await runToEnd(line);
      assert.equal(run.code, 0, `'${line}' exited ${run.code}:\n${run.stdout}${run.stderr}`);
      outputs.set(line, run.stdout);
    }
  }
  return outputs;
}

/** The lines printed by the command of `outputs` that starts with `prefix`. */
function printedBy(outputs: Map<string, string>, prefix: string): string[] {
  const key = [...outputs.keys()].find((k) => k.startsWith(prefix));
  assert.ok(key, `the section runs '${prefix}…'`);
  return outputs.get(key)!.trim().split('\n');
}

describe("the README's short tour, as printed", () => {
  before(() => {
    // The project uses Fennel as installed: its compiled dist/. Build it if the sources are newer.
    const built = join(ROOT, 'dist/index.js');
    let builtAt = 0;
    try {
      builtAt = statSync(built).mtimeMs;
    } catch {}
    if (newerThan(join(ROOT, 'src'), builtAt)) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });
    mkdirSync(join(project, 'node_modules/.bin'), { recursive: true });
    symlinkSync(ROOT, join(project, 'node_modules/fennel'));
    symlinkSync(join(ROOT, 'bin/fennel.js'), join(project, 'node_modules/.bin/fennel'));
    symlinkSync(join(ROOT, 'node_modules/.bin/tsx'), join(project, 'node_modules/.bin/tsx'));
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'my-project', type: 'module', private: true }));
  });

  after(async () => {
    for (const worker of background) if (worker.child.exitCode === null) process.kill(-worker.child.pid!, 'SIGINT');
    await Promise.all(background.map((w) => w.exited));
    rmSync(project, { recursive: true, force: true });
  });

  it('runs every block of the section and prints what it says', async () => {
    const outputs = await runSection('A short tour');
    const printed = (prefix: string): string[] => printedBy(outputs, prefix);
    assert.deepEqual(printed('npx tsx caller.ts'), ['5', '5', '5', '[ 3, 7 ]', '5', '9592']);
    assert.deepEqual(printed('npx tsx lookup.ts'), ['SUCCESS 5']);
    assert.deepEqual(printed('npx fennel call math.add 2 3 --app ./tasks.ts --wait'), ['5']);
    assert.match(printed('npx fennel status').join('\n'), /SUCCESS\s+\d+/);
    assert.match(printed('npx fennel inspect ping').join('\n'), /^-> \S+@\S+: OK\n\s+pong$/m);
    assert.match(printed('npx fennel control pool-grow 2').join('\n'), /^-> \S+@\S+: OK\n\s+pool will grow$/m);
  });

  it("runs the cache section's blocks, in the same project, and prints what they say", async () => {
    const outputs = await runSection('A cache: memoized tasks and cache-aside');
    assert.deepEqual(printedBy(outputs, 'npx tsx cached.ts'), ['144', '144', "{ name: 'Ada' }"]);
  });
});
