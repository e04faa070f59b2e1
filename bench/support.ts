// What the benchmark scenarios share: a fresh temp database per run, a real worker process started the way a
// user starts it (and always killed, even when a run throws), polling, and the statistics (median, percentile).

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

const workers = new Set<ChildProcess>();
const tempDirs = new Set<string>();

/** Kills every worker still running (with its pool slots: each worker leads its own process group) and removes temp files. */
export function cleanUp(): void {
  for (const child of workers) killGroup(child, 'SIGKILL');
  workers.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}
process.on('exit', cleanUp);

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** A fresh database file in its own temp folder, removed by `cleanup()` (or at exit). */
export function tempDatabase(): { url: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'fennel-bench-'));
  tempDirs.add(dir);
  return {
    url: `sqlite://${join(dir, 'x.db')}`,
    cleanup: () => {
      rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    },
  };
}

export interface WorkerProcess {
  /** performance.now() when the "worker ready" line was read. */
  readonly readyAt: number;
  /** Lines the worker printed at warn level or above, or that are not pino JSON (there should be none). */
  readonly complaints: string[];
  /** Rejects if the worker exits before stop() is called (it crashed, or quit by itself). */
  readonly died: Promise<never>;
  /** Warm shutdown with SIGTERM; SIGKILL to the whole process group if it has not exited after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartWorkerOptions {
  brokerUrl: string;
  pool: 'async' | 'process' | 'thread';
  concurrency: number;
  timeoutMs?: number;
}

/**
 * Starts `node --conditions=development --import tsx src/cli/main.ts worker --app bench/tasks.ts -P … -c …
 * --loglevel warn` with FENNEL_BROKER_URL set, as a user would, and resolves when it prints its JSON
 * "worker ready" line (printed at any log level).
 */
export async function startWorker(options: StartWorkerOptions): Promise<WorkerProcess> {
  const args = ['--conditions=development', '--import', 'tsx', 'src/cli/main.ts', 'worker', '--app', 'bench/tasks.ts'];
  args.push('-P', options.pool, '-c', String(options.concurrency), '--loglevel', 'warn');
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: {
      ...process.env,
      FENNEL_BROKER_URL: options.brokerUrl,
      FENNEL_RESULT_BACKEND: '',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so that a SIGKILL reaches its pool slots too.
    detached: true,
  });
  workers.add(child);
  const complaints: string[] = [];
  let stderr = '';
  let readyAt = NaN;
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  let buffered = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let entry: { msg?: unknown; level?: unknown } = {};
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        // Not a pino line: counted as a complaint below.
      }
      if (typeof entry.msg === 'string' && entry.msg.startsWith('worker ready')) {
        readyAt = performance.now();
        onReady();
      } else if (typeof entry.level !== 'number' || entry.level >= 40) complaints.push(line);
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const died = exited.then((): never => {
    throw new Error(`worker exited unexpectedly (code ${child.exitCode}, signal ${child.signalCode}):\n${stderr}`);
  });
  died.catch(() => {});
  const stop = async (graceMs = 10_000): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }
    killGroup(child, 'SIGKILL'); // Any slot left behind.
    workers.delete(child);
  };
  const timeoutMs = options.timeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      ready,
      died,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no "worker ready" line after ${timeoutMs} ms:\n${stderr}`)), timeoutMs))),
    ]);
  } catch (error) {
    await stop(1000);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return { readyAt, complaints, died, stop };
}

/** Resolves once `check()` is true, checking every `everyMs`; rejects after `timeoutMs`. */
export async function waitUntil(check: () => boolean | Promise<boolean>, everyMs: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
