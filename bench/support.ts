// What the benchmark scenarios share: a fresh temp database per run, real worker processes started the way
// users start them (Fennel's and the peers'; always killed, even when a run throws), polling, and the
// statistics (median, percentile).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Channel } from 'amqplib';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** One measured number of one run. */
export interface Metric {
  value: number;
  unit: 'tasks/s' | 'ms' | 'cmds/task' | 'µs/task';
}

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

/** Kills every process still running (with its pool slots: each leads its own process group) and removes temp files. */
export function cleanUp(): void {
  for (const child of children) killGroup(child, 'SIGKILL');
  children.clear();
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
  readonly pid: number;
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
  /** Extra environment, e.g. { FENNEL_TRACK_STARTED: 'false' }. */
  env?: Record<string, string>;
  pool: 'async' | 'process' | 'thread';
  concurrency: number;
  /** Extra flags for `fennel worker`, e.g. ['--prefetch-multiplier', '8']. */
  flags?: string[];
  timeoutMs?: number;
}

/**
 * The installed `fennel` command (bin/fennel.js: the built package in dist/, with tsx registered for `--app
 * tasks.ts`). The benchmarks measure Fennel as users run it, and as BullMQ is measured: compiled JavaScript,
 * not the sources through tsx's loader (which adds a `__name` call to every function it creates, and costs
 * the worker about a tenth of its CPU). `npm run bench` builds dist/ first; run.ts refuses a stale one.
 */
export const FENNEL_BIN = join(ROOT, 'bin', 'fennel.js');

/**
 * Starts `node bin/fennel.js worker --app bench/tasks.ts -P … -c … --loglevel warn` with FENNEL_BROKER_URL
 * set, as a user would (`npx fennel worker …`), and resolves when it prints its JSON "worker ready" line
 * (printed at any log level).
 */
export async function startWorker(options: StartWorkerOptions): Promise<WorkerProcess> {
  const args = [FENNEL_BIN, 'worker', '--app', 'bench/tasks.ts'];
  args.push('-P', options.pool, '-c', String(options.concurrency), '--loglevel', 'warn', ...(options.flags ?? []));
  return startProcess({
    command: process.execPath,
    args,
    env: { ...options.env, FENNEL_BROKER_URL: options.brokerUrl, FENNEL_RESULT_BACKEND: '' },
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
}

export interface StartProcessOptions {
  command: string;
  args: string[];
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** Default: the repository root. */
  cwd?: string;
  /**
   * Whether stdout is pino-style JSON, so that lines at warn level or above (and lines that are not JSON) count
   * as complaints. Default true; false for a peer whose stdout is free text (Celery prints a banner).
   */
  jsonLog?: boolean;
  timeoutMs?: number;
}

/**
 * Spawns a long-running worker process in its own process group (so a SIGKILL reaches its pool children
 * too), registered for cleanUp(), and resolves when it prints a JSON line whose `msg` starts with
 * "worker ready". Fennel's, BullMQ's (bench/peers/bullmq-worker.ts) and Celery's (bench/peers/celery_bench.py)
 * workers all print one.
 */
export async function startProcess(options: StartProcessOptions): Promise<WorkerProcess> {
  const child = spawn(options.command, options.args, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so that a SIGKILL reaches its pool slots too.
    detached: true,
  });
  children.add(child);
  const jsonLog = options.jsonLog ?? true;
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
      } else if (jsonLog && (typeof entry.level !== 'number' || entry.level >= 40)) complaints.push(line);
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  let spawnError = '';
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    // A command that cannot be started (ENOENT) emits 'error' and no 'exit'.
    child.once('error', (error) => {
      spawnError = error.message;
      resolve();
    });
  });
  // 'exit' may come before the last of its output has been read ('close' comes after it, unless a pool slot still
  // holds the pipes): the message waits a little for it, so that it says why.
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const died = exited.then(async (): Promise<never> => {
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 1_000))]);
    const said = [stderr.trim(), ...complaints.slice(-5)].filter(Boolean).join('\n');
    throw new Error(`${options.command} ${options.args.join(' ')} exited unexpectedly (code ${child.exitCode}, signal ${child.signalCode}) ${spawnError}:\n${said}`);
  });
  died.catch(() => {});
  const stop = async (graceMs = 10_000): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && !spawnError) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }
    killGroup(child, 'SIGKILL'); // Any slot left behind.
    children.delete(child);
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
  return { pid: child.pid ?? -1, readyAt, complaints, died, stop };
}

/**
 * Runs a command to completion (a peer's producer script), registered for cleanUp() meanwhile, and
 * resolves with its stdout; rejects with the tail of stderr if it exits non-zero or outlives `timeoutMs`.
 */
export async function runProcess(command: string, args: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<string> {
  const child = spawn(command, args, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), options.timeoutMs ?? 300_000);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (exitCode) => resolve(exitCode));
    });
    if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited with code ${code ?? child.signalCode}:\n${stderr}`);
    return stdout;
  } finally {
    clearTimeout(timer);
    killGroup(child, 'SIGKILL');
    children.delete(child);
  }
}

/** CPU seconds (user + system) a live process has used, from /proc (Linux); NaN where that cannot be read. */
export function processCpuSec(pid: number): number {
  try {
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th, in clock ticks (100 a second).
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** The pids of a process's children (a worker's pool slots), from /proc (Linux); empty where that cannot be read. */
export function childPids(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The parent's pid is the 2nd field after the parenthesised command name.
      if (Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === pid) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
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

// Python Celery peers (bench/peers): a worker started as its users start it, and a producer script that
// prints one JSON line. Each comparison passes its own Celery app module, script and environment.

/** The Python that has Celery 5 (default Debian's). */
export const CELERY_PYTHON = process.env['FENNEL_BENCH_PYTHON'] || '/usr/bin/python3';
const PEERS_DIR = join(ROOT, 'bench', 'peers');

/**
 * `python3 -m celery -A <module> worker <pool> -n <name>` in bench/peers. No gossip, mingle or heartbeat: the
 * broadcast chatter between workers, which no-op throughput does not need.
 */
export function startCeleryWorker(module: string, poolArgs: readonly string[], name: string, env: Record<string, string>): Promise<WorkerProcess> {
  return startProcess({
    command: CELERY_PYTHON,
    args: ['-m', 'celery', '-A', module, 'worker', ...poolArgs, '-n', name, '--loglevel', 'WARNING', '--without-gossip', '--without-mingle', '--without-heartbeat'],
    cwd: PEERS_DIR,
    env,
    jsonLog: false,
  });
}

/** Runs a producer script in bench/peers and parses the JSON line it prints last. */
export async function runCeleryProducer<T = Record<string, number | undefined>>(script: string, args: ReadonlyArray<string | number>, env: Record<string, string>, timeoutMs = 180_000): Promise<T> {
  const stdout = await runProcess(CELERY_PYTHON, [script, ...args.map(String)], { cwd: PEERS_DIR, env, timeoutMs });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as T;
}

/** The bench's no-op task as the end-to-end passes use it: `delayMany`, then `get()` on every result. */
interface NoopTask {
  delayMany(argsList: Array<[]>): Array<{ readonly sent: Promise<void>; get(options: { timeoutMs: number }): Promise<unknown> }>;
}

/**
 * One end-to-end pass of Fennel's no-op task: `count` calls published with `delayMany` in batches of `batch`
 * (each batch confirmed before the next is sent), then every result awaited with `get()`.
 */
export async function delayAllAndGet(noop: NoopTask, count: number, batch: number): Promise<void> {
  const gets: Array<Promise<unknown>> = [];
  for (let i = 0; i < count; i += batch) {
    const results = noop.delayMany(Array.from({ length: Math.min(batch, count - i) }, (): [] => []));
    await results[0]!.sent;
    for (const result of results) gets.push(result.get({ timeoutMs: 300_000 }));
  }
  await Promise.all(gets);
}

/** The CPU's model name (Linux), for the machine line of a section. */
export function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The commit benchmarked, marked when src/ has uncommitted changes. */
export function commit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${sha} (with uncommitted changes in src/)` : sha;
  } catch {
    return 'unknown';
  }
}

/**
 * Deletes each queue on the RabbitMQ at `url`, and the exchange of the same name (Fennel declares one per queue)
 * if any, each on its own channel: a 404 closes a channel.
 */
export async function deleteAmqp(url: string, names: readonly string[]): Promise<void> {
  const connection = await connect(url);
  connection.on('error', () => {});
  try {
    for (const name of names) {
      for (const remove of [(ch: Channel) => ch.deleteQueue(name), (ch: Channel) => ch.deleteExchange(name)]) {
        const channel = await connection.createChannel();
        channel.on('error', () => {});
        await remove(channel).catch(() => {});
        await channel.close().catch(() => {});
      }
    }
  } finally {
    await connection.close().catch(() => {});
  }
}
