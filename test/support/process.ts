// Test support: temp databases, real `fennel worker` processes, polling waits (never timing asserts), and results that must fail.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { AsyncResult } from '../../src/app/result.ts';
import { RemoteTaskError } from '../../src/errors.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CLI = join(ROOT, 'src/cli/main.ts');
export const NODE_ARGS = ['--conditions=development', '--import', 'tsx'];

/** A fresh directory with a database URL in it; `cleanup()` removes both. */
export function tempDb(): { dir: string; url: string; path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'fennel-test-'));
  const path = join(dir, 'fennel.db');
  return { dir, path, url: `sqlite://${path}`, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function uniqueQueue(prefix = 'q'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export interface RunningWorker {
  child: ChildProcess;
  /** Every line it has printed so far (stdout and stderr). */
  lines: string[];
  /** Resolves with the first line matching, or rejects after timeoutMs. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Every process the tests start here, until it exits. When the test process ends, however it ends (its last
 * test done, a test runner's timeout and --test-force-exit, an uncaught error), whatever is still running is
 * killed, with its process group where it leads one: a test never leaves a worker behind for the next file.
 */
const running = new Set<ChildProcess>();
const groupLeaders = new WeakSet<ChildProcess>();
function killRunning(): void {
  for (const child of running) {
    try {
      if (child.pid !== undefined) process.kill(groupLeaders.has(child) ? -child.pid : child.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}
process.once('exit', killRunning);
// The test runner stops a file that ran past its timeout with SIGTERM, which would skip 'exit' handlers.
process.once('SIGTERM', () => {
  killRunning();
  process.exit(143);
});

/** Notes a started process until it exits, to be killed if the test process ends first (see `running`). Returns it. */
export function track<C extends ChildProcess>(child: C, leadsGroup = false): C {
  running.add(child);
  if (leadsGroup) groupLeaders.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

/** Runs the fennel CLI as a user would, in its own process, from the repository root. */
export function runCli(args: string[], env: Record<string, string> = {}): RunningWorker {
  return spawnCli(args, env, false);
}

/**
 * As runCli, but as the leader of a new process group, as a shell starts a job: signalGroup() then reaches
 * it and every process it started (its pool slots), as Ctrl-C in a terminal does.
 */
export function runCliInOwnGroup(args: string[], env: Record<string, string> = {}): RunningWorker {
  return spawnCli(args, env, true);
}

function spawnCli(args: string[], env: Record<string, string>, detached: boolean): RunningWorker {
  const child = track(
    spawn(process.execPath, [...NODE_ARGS, CLI, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached,
    }),
    detached,
  );
  return watchLines(child);
}

/**
 * Follows a started process (its stdout and stderr piped) line by line: what it has printed, a wait for a line,
 * and its exit. Every process the tests run in the background is followed this way.
 */
export function watchLines(child: ChildProcess): RunningWorker {
  const lines: string[] = [];
  const listeners = new Set<() => void>();
  // A line can arrive in two reads of the pipe: the piece of a stream's last read after its last newline stays the
  // last entry of `lines` for that stream, and the next read of the stream completes it (a prompt with no newline
  // is still seen at once).
  const reader = (): ((chunk: Buffer) => void) => {
    let open: number | undefined;
    return (chunk) => {
      const pieces = chunk.toString().split('\n');
      if (open !== undefined) lines[open] += pieces.shift()!;
      open = undefined;
      pieces.forEach((piece, i) => {
        const last = i === pieces.length - 1;
        if (!piece.trim() && !(last && piece)) return;
        lines.push(piece);
        if (last) open = lines.length - 1;
      });
      for (const l of listeners) l();
    };
  };
  child.stdout!.on('data', reader());
  child.stderr!.on('data', reader());
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));
  return {
    child,
    lines,
    exited,
    waitForLine(pattern, timeoutMs = 30_000) {
      return new Promise((res, rej) => {
        const check = (): boolean => {
          const hit = lines.find((l) => pattern.test(l));
          if (hit) {
            listeners.delete(check);
            clearTimeout(timer);
            res(hit);
          }
          return Boolean(hit);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          rej(new Error(`no line matching ${pattern} within ${timeoutMs} ms; output:\n${lines.slice(-30).join('\n')}`));
        }, timeoutMs);
        if (!check()) listeners.add(check);
        void exited.then(() => setTimeout(() => {
          if (listeners.has(check)) {
            listeners.delete(check);
            clearTimeout(timer);
            rej(new Error(`process exited before printing ${pattern}; output:\n${lines.slice(-30).join('\n')}`));
          }
        }, 50));
      });
    },
  };
}

/** Starts `fennel worker` and waits until it is consuming; `env` adds settings (a result backend, say). */
export async function startWorker(app: string, url: string, flags: string[] = [], env: Record<string, string> = {}): Promise<RunningWorker> {
  const worker = runCli(['worker', '--app', app, ...flags], { ...env, FENNEL_BROKER_URL: url });
  await worker.waitForLine(/worker ready/);
  return worker;
}

export async function stopProcess(worker: RunningWorker, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill(signal);
  await worker.exited;
}

/** Awaits a result that must fail (within `timeoutMs`), and returns the RemoteTaskError it failed with. */
export async function remoteFailure(result: AsyncResult<unknown>, timeoutMs: number): Promise<RemoteTaskError> {
  const error = await result.get({ timeoutMs }).then(
    (value) => assert.fail(`expected a failure, got ${JSON.stringify(value)}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RemoteTaskError, String(error));
  return error;
}

/** Polls `predicate` until it is true; fails with `what` after `timeoutMs`. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Non-empty lines printed on stdout, and on stderr, kept apart. */
  stdout: string[];
  stderr: string[];
}

/**
 * Runs one `fennel` command to its end and returns its exit code and what it printed on each stream.
 * Stdin is not a TTY. Fails if the command has not exited within `timeoutMs` (it is killed then).
 */
export function runCliToEnd(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliResult> {
  const child = track(
    spawn(process.execPath, [...NODE_ARGS, CLI, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const split = (text: string): string[] => text.split('\n').filter((l) => l.trim() !== '');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`fennel ${args.join(' ')} did not exit within ${timeoutMs} ms; output:\n${out}${err}`));
    }, timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: split(out), stderr: split(err) });
    });
  });
}

/** The non-empty lines of a text file, or [] if it does not exist yet. */
export function fileLines(path: string): string[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '');
}

/** True while the process has neither exited nor been killed. */
export function isRunning(worker: RunningWorker): boolean {
  return worker.child.exitCode === null && worker.child.signalCode === null;
}

/** Starts `fennel worker` in a process group of its own (see runCliInOwnGroup) and waits until it is consuming. */
export async function startWorkerInOwnGroup(app: string, url: string, flags: string[] = []): Promise<RunningWorker> {
  const worker = runCliInOwnGroup(['worker', '--app', app, ...flags], { FENNEL_BROKER_URL: url });
  await worker.waitForLine(/worker ready/);
  return worker;
}

/** Sends `signal` to the whole process group a runCliInOwnGroup() process leads, as a terminal's Ctrl-C does. */
export function signalGroup(worker: RunningWorker, signal: NodeJS.Signals): void {
  process.kill(-worker.child.pid!, signal);
}

/** True while a process with this pid exists and has not exited (an unreaped zombie counts as exited, on Linux). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) state ..."; a container whose init does not reap leaves orphans as zombies.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return true; // no /proc (not Linux): the signal check above is all there is
  }
}

/** Runs a TypeScript script of the repository (an example's main.ts) to its end, tracked; its exit code and output. */
export function runScriptToEnd(script: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = track(spawn(process.execPath, [...NODE_ARGS, join(ROOT, script), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}
