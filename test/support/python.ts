// Python processes for the Celery interop tests: Debian's /usr/bin/python3 running a fixture (a Celery worker, a
// client script), tracked so none outlives the test file, with its output kept line by line.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { track, watchLines } from './process.ts';
import { redisSkipReason } from './services.ts';

/** Debian's Python, where python3-celery is installed (not a pyenv shim on PATH). */
export const PYTHON = '/usr/bin/python3';

export interface PythonProcess {
  child: ChildProcess;
  /** Its stdout and stderr, line by line, as they arrive. */
  lines: string[];
  /** Resolves with a line matching `pattern` once one arrives; rejects (with the output) if it exits first or the time runs out. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<number | null>;
}

export function startPython(args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): PythonProcess {
  const child = track(spawn(PYTHON, args, { cwd: options.cwd, env: { PYTHONDONTWRITEBYTECODE: '1', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  // watchLines joins a line that arrives in two reads of the pipe (a Celery worker's log, a client's JSON line).
  const watched = watchLines(child);
  return { child, lines: watched.lines, waitForLine: (pattern, timeoutMs) => watched.waitForLine(pattern, timeoutMs), exited: watched.exited.then(({ code }) => code) };
}

/** SIGTERM (Celery's warm shutdown), then SIGKILL if it has not exited within 10 s. */
export async function stopPython(proc: PythonProcess | undefined): Promise<void> {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 10_000);
  await proc.exited;
  clearTimeout(timer);
}

/**
 * Why a Celery interop test cannot run here (Redis down, or Debian's Python without Celery), or false. On CI
 * (CI=true) a missing Celery is an error, not a skip.
 */
export async function celerySkipReason(): Promise<string | false> {
  const redis = await redisSkipReason();
  if (redis) return redis;
  const python = spawnSync(PYTHON, ['-c', 'import celery, kombu, redis'], { encoding: 'utf8' });
  if (python.status === 0) return false;
  const reason = `${PYTHON} cannot import celery and redis (apt-get install python3-celery python3-redis)`;
  if (process.env['CI'] === 'true') throw new Error(`${reason} (CI=true: Debian's Celery is required)`);
  return reason;
}
