// `npm start` (the Wyndor app: a gateway and a worker) and `npm run demo` (two workers), run as a user runs them,
// through npm: whatever they start stops with them. Each run takes the whole process tree under npm (pgrep -P,
// recursively) once it is serving, signals it, and waits (polling, bounded) until every one of those processes is
// gone: npm, its shell, the script, the gateway, the workers, their pool slots and tsx's esbuild services.
//   SIGTERM to npm: npm passes it to its `sh -c`, which dies of it; the script notices it is orphaned.
//   SIGINT as a terminal's Ctrl-C sends it: to npm's whole process group.
//   SIGKILL to npm, or to the script: nothing can run in the killed process; the rest notice and stop.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pidAlive, ROOT, tempDb, waitFor } from '../support/process.ts';

interface NpmRun {
  npm: ChildProcess;
  lines: string[];
  waitForLine(pattern: RegExp): Promise<string>;
}

/** `npm run <script>` as the leader of a process group of its own, as a shell starts a job. */
function runNpm(script: string, env: Record<string, string> = {}): NpmRun {
  const npm = spawn('npm', ['run', script], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const lines: string[] = [];
  const onData = (chunk: Buffer): void => {
    for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(line);
  };
  npm.stdout.on('data', onData);
  npm.stderr.on('data', onData);
  return {
    npm,
    lines,
    async waitForLine(pattern) {
      await waitFor(() => lines.some((l) => pattern.test(l)), `a line matching ${pattern} from npm run ${script}; output:\n${lines.join('\n')}`, 60_000);
      return lines.find((l) => pattern.test(l))!;
    },
  };
}

function killIfThere(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** Runs `until` (the run getting ready); if it fails, kills the whole tree first, so no test leaves any of it behind. */
async function orKill<T>(run: NpmRun, until: () => Promise<T>): Promise<T> {
  try {
    return await until();
  } catch (error) {
    for (const pid of [run.npm.pid!, ...descendants(run.npm.pid!)]) killIfThere(pid);
    throw error;
  }
}

/** Every descendant of `pid`, by `pgrep -P`, parents before children. */
function descendants(pid: number): number[] {
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);
  return children.flatMap((child) => [child, ...descendants(child)]);
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** Waits until every process is gone; fails naming those left, and then kills them so no test leaves any behind. */
async function assertAllGone(pids: number[], what: string): Promise<void> {
  try {
    await waitFor(() => pids.every((pid) => !pidAlive(pid)), `every process of ${what} to be gone`, 60_000);
  } catch (error) {
    const left = pids.filter(pidAlive);
    for (const pid of left) killIfThere(pid);
    throw new Error(`${(error as Error).message}; still running: ${left.map((pid) => `${pid} ${commandLine(pid)}`).join('; ')}`);
  }
}

/** Signals a snapshot of the tree and checks that all of it goes; returns npm's output. */
async function signalAndCheck(run: NpmRun, signal: (tree: Map<number, string>) => void, what: string): Promise<string[]> {
  const pids = [run.npm.pid!, ...descendants(run.npm.pid!)];
  const tree = new Map(pids.map((pid) => [pid, commandLine(pid)]));
  try {
    signal(tree);
  } finally {
    await assertAllGone(pids, what);
  }
  return run.lines;
}

/** The pid in the tree whose command line matches. */
function pidOf(tree: Map<number, string>, pattern: RegExp): number {
  const hit = [...tree].find(([, command]) => pattern.test(command));
  assert.ok(hit, `no process matching ${pattern} in ${JSON.stringify([...tree])}`);
  return hit[0];
}

const START = /node .*examples\/wyndor\/start\.ts/;
const DEMO = /node .*examples\/demo\.ts/;
const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
/** npm passes SIGINT to its `sh -c` only; dash, waiting for the script, swallows it unless the script was exec'd. */
const npmSigintReason = (script: string): string | false =>
  scripts[script]?.startsWith('exec ') ? false : `npm passes a SIGINT sent to it alone to its shell, which does not pass it on: needs "exec " before package.json's "${script}" script`;

describe('npm start stops the gateway and the worker with it', () => {
  async function started(): Promise<{ run: NpmRun; cleanup: () => void }> {
    const db = tempDb();
    const run = runNpm('start', { PORT: '0', FENNEL_BROKER_URL: db.url });
    try {
      await orKill(run, async () => {
        await run.waitForLine(/Ctrl-C to stop/);
        // The banner shows the port the gateway got (PORT=0), and it serves there.
        const url = /Wyndor LP app\s+(http:\/\/\S+?)\/?$/.exec(await run.waitForLine(/Wyndor LP app/))![1]!;
        assert.doesNotMatch(url, /:0$/);
        assert.equal((await fetch(`${url}/healthz`)).status, 200);
      });
    } catch (error) {
      db.cleanup();
      throw error;
    }
    return { run, cleanup: db.cleanup };
  }

  /** The tree holds what `npm start` runs: the script, a gateway, a worker and its pool of two. */
  function checkTree(tree: Map<number, string>): void {
    pidOf(tree, START);
    pidOf(tree, /main\.ts gateway /);
    pidOf(tree, /main\.ts worker /);
    assert.equal([...tree.values()].filter((c) => /slot-main\.ts/.test(c)).length, 2, JSON.stringify([...tree]));
  }

  for (const [name, signal] of [
    ['SIGTERM to the npm process', (tree: Map<number, string>, npm: number) => (checkTree(tree), process.kill(npm, 'SIGTERM'))],
    ['SIGINT to npm\'s process group (Ctrl-C in a terminal)', (tree: Map<number, string>, npm: number) => (checkTree(tree), process.kill(-npm, 'SIGINT'))],
    ['SIGKILL to the npm process', (tree: Map<number, string>, npm: number) => (checkTree(tree), process.kill(npm, 'SIGKILL'))],
    ['SIGKILL to the script (the parent of the gateway and the worker)', (tree: Map<number, string>) => (checkTree(tree), process.kill(pidOf(tree, START), 'SIGKILL'))],
  ] as const) {
    it(`${name}: no process is left`, async () => {
      const { run, cleanup } = await started();
      try {
        const lines = await signalAndCheck(run, (tree) => signal(tree, run.npm.pid!), `npm start (${name})`);
        if (!name.startsWith('SIGKILL to the script')) {
          // The script said what it stopped (a killed script cannot).
          assert.ok(lines.some((l) => /^npm start: .*: stopping the gateway \(pid \d+\) and the worker \(pid \d+\)$/.test(l)), lines.join('\n'));
          assert.ok(lines.some((l) => /^npm start: stopped the gateway \(pid \d+\) and the worker \(pid \d+\)$/.test(l)), lines.join('\n'));
        }
      } finally {
        cleanup();
      }
    });
  }

  it('SIGINT to the npm process alone: no process is left', { skip: npmSigintReason('start') }, async () => {
    const { run, cleanup } = await started();
    try {
      await signalAndCheck(run, (tree) => (checkTree(tree), process.kill(run.npm.pid!, 'SIGINT')), 'npm start (SIGINT to npm)');
    } finally {
      cleanup();
    }
  });
});

describe('npm run demo stops its workers with it', () => {
  /** Signals the demo once both workers are ready: it is then sending tasks and waiting for their results. */
  async function demoStoppedBy(name: string, signal: (tree: Map<number, string>, npm: number) => void): Promise<string[]> {
    const run = runNpm('demo');
    await orKill(run, async () => {
      await run.waitForLine(/worker 1 ready/);
      await run.waitForLine(/worker 2 ready/);
    });
    const lines = await signalAndCheck(
      run,
      (tree) => {
        pidOf(tree, DEMO);
        assert.equal([...tree.values()].filter((c) => /main\.ts worker /.test(c)).length, 2, JSON.stringify([...tree]));
        assert.equal([...tree.values()].filter((c) => /slot-main\.ts/.test(c)).length, 4, JSON.stringify([...tree]));
        signal(tree, run.npm.pid!);
      },
      `npm run demo (${name})`,
    );
    // It was stopped, not finished: otherwise this proved nothing.
    assert.ok(!lines.some((l) => /^Done\./.test(l)), `the demo finished before it was signalled:\n${lines.join('\n')}`);
    // Its temporary broker went with it, unless it was killed outright (then this test removes it).
    const dir = /broker sqlite:\/\/(\/\S+)\/fennel\.db/.exec(lines.join('\n'))?.[1];
    assert.ok(dir, lines.join('\n'));
    if (name === 'SIGKILL') rmSync(dir, { recursive: true, force: true });
    else assert.ok(!existsSync(dir), `the demo's directory ${dir} is still there`);
    return lines;
  }

  const said = (lines: string[], pattern: RegExp): void => assert.ok(lines.some((l) => pattern.test(l)), lines.join('\n'));

  it('SIGTERM to the npm process: no process is left', async () => {
    const lines = await demoStoppedBy('SIGTERM', (_, npm) => process.kill(npm, 'SIGTERM'));
    // npm runs the script with exec (package.json), so the signal reaches it, not a shell in between.
    said(lines, /^demo: SIGTERM: stopping worker 1 \(pid \d+\) and worker 2 \(pid \d+\)$/);
    said(lines, /^demo: stopped worker 1 \(pid \d+\) and worker 2 \(pid \d+\)$/);
  });

  it('SIGINT to npm\'s process group (Ctrl-C in a terminal): no process is left', async () => {
    const lines = await demoStoppedBy('SIGINT', (_, npm) => process.kill(-npm, 'SIGINT'));
    said(lines, /^demo: SIGINT: stopping worker 1 \(pid \d+\) and worker 2 \(pid \d+\)$/);
  });

  it('SIGKILL to the demo script (the parent of the workers): no process is left', async () => {
    await demoStoppedBy('SIGKILL', (tree) => process.kill(pidOf(tree, DEMO), 'SIGKILL'));
  });

  it('SIGINT to the npm process alone: no process is left', { skip: npmSigintReason('demo') }, async () => {
    await demoStoppedBy('SIGINT to npm', (_, npm) => process.kill(npm, 'SIGINT'));
  });
});
