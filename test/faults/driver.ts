// The fault-injection driver, shared by every engine: enqueue thousands of tasks that record each run in a
// ledger, run them on several real worker processes, keep a backlog waiting (so a fault always meets busy
// workers and work left to do, on a fast machine or a loaded one), and at fixed points of progress:
//   1. SIGKILL a worker process (and start another), 2. SIGKILL one pool slot of another worker,
//   3. break every broker connection, 4. restart the broker (where it keeps its data),
//   5. SIGTERM a worker: it must drain and exit 0 (and another is started).
// Then count: enqueued, completed (distinct ids in the ledger), lost (enqueued, never run: must be 0), run
// more than once (allowed under at-least-once: counted, reported), and per fault the time until the ledger
// moved on again. What is asserted does not depend on timing; the times are only reported.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fennel } from '../../src/index.ts';
import { runCli, type RunningWorker } from '../support/process.ts';

export const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');

export interface Fault {
  /** Shown in the report. */
  label: string;
  /** Injects it; `ctx` gives the running workers and starts new ones. */
  inject(ctx: FaultContext): Promise<void>;
}

export interface FaultContext {
  workers: RunningWorker[];
  startWorker(): Promise<RunningWorker>;
}

export interface EngineSetup {
  engine: string;
  brokerUrl: string;
  backendUrl: string;
  /** The engine-specific faults (connection breaks, broker restarts); process faults are added by the driver. */
  brokerFaults: Fault[];
  /** What the engine cannot have done to it, for the report. */
  notApplicable: string[];
}

export interface FaultReport {
  engine: string;
  /** Published before the first fault (then the backlog is topped up). */
  upFront: number;
  enqueued: number;
  completed: number;
  lost: number;
  duplicates: number;
  recoveries: Array<{ fault: string; recoverMs: number }>;
  sigtermExit: string;
  /** The SIGTERMed worker's last lines of output, to say why when it did not exit 0. */
  sigtermOutput: string[];
  notApplicable: string[];
  totalMs: number;
}

/** Recovered: this many more runs since the fault, more than the workers' prefetch windows (2 × 2 slots × 4) hold. */
export const RECOVERED_AFTER = 50;
/** A fault is injected every this many distinct runs. */
const FAULT_EVERY = 200;
/** Tasks kept waiting while faults are injected: many times RECOVERED_AFTER plus the prefetch windows. */
const BACKLOG = 500;
export const WORKER_FLAGS = ['-P', 'process', '-c', '2', '--loglevel', 'error', '--grace', '60'];

export function ledgerIds(ledger: string): string[] {
  return readFileSync(ledger, 'utf8').split('\n').filter(Boolean);
}

/** FENNEL_FAULTS_TRACE=1 prints each step of a scenario, with the time, to stderr. */
export function trace(text: string): void {
  if (process.env['FENNEL_FAULTS_TRACE']) process.stderr.write(`[faults ${new Date().toISOString().slice(11, 23)}] ${text}\n`);
}

export async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs: number, explain?: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  trace(`waiting for ${what}`);
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${explain ? `: ${await explain().catch((e: unknown) => String(e))}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function childPids(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export async function runFaultScenario(setup: EngineSetup, options: { tasks: number; sleepMs: number; dir: string; queue: string }): Promise<FaultReport> {
  const env = {
    FENNEL_BROKER_URL: setup.brokerUrl,
    FENNEL_RESULT_BACKEND: setup.backendUrl,
    FENNEL_VISIBILITY_TIMEOUT_SEC: '3',
    FENNEL_POLL_INTERVAL_MS: '100',
  };
  const ledger = join(options.dir, `${setup.engine}-ledger.txt`);
  writeFileSync(ledger, '');
  const all: RunningWorker[] = [];
  const ctx: FaultContext = {
    workers: [],
    startWorker: async () => {
      const w = runCli(['worker', '--app', TASKS, '-Q', options.queue, ...WORKER_FLAGS], env);
      all.push(w);
      await w.waitForLine(/worker ready/, 60_000);
      ctx.workers.push(w);
      return w;
    },
  };
  const app = new Fennel({ broker: setup.brokerUrl, backend: setup.backendUrl, pollIntervalMs: 100 });
  let sigtermExit = 'not reached';
  let sigtermOutput: string[] = [];
  const processFaults: Fault[] = [
    {
      label: 'SIGKILL a worker process (another started)',
      inject: async (c) => {
        const victim = c.workers.shift()!;
        const slots = childPids(victim.child.pid!);
        victim.child.kill('SIGKILL');
        await victim.exited;
        // Its slots notice their parent is gone and exit; a new worker is started meanwhile.
        for (const pid of slots) await until(() => !alive(pid), `slot ${pid} of the killed worker to exit`, 10_000).catch(() => process.kill(pid, 'SIGKILL'));
        await c.startWorker();
      },
    },
    {
      label: 'SIGKILL one pool slot of a worker',
      inject: async (c) => {
        const slot = childPids(c.workers[0]!.child.pid!)[0];
        if (slot) process.kill(slot, 'SIGKILL');
      },
    },
  ];
  const sigterm: Fault = {
    label: 'SIGTERM a worker (drains, exits 0; another started)',
    inject: async (c) => {
      const victim = c.workers.shift()!;
      victim.child.kill('SIGTERM');
      const exit = await victim.exited;
      sigtermExit = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
      sigtermOutput = victim.lines.slice(-20);
      await c.startWorker();
    },
  };
  const faults = [...processFaults, ...setup.brokerFaults, sigterm];
  const feeder = new Feeder({ send: () => app.sendTask('faults.work', [ledger, options.sleepMs], { queue: options.queue, ignoreResult: true }), ran: () => distinctRuns(ledger) });
  try {
    await ctx.startWorker();
    await ctx.startWorker();
    const t0 = Date.now();
    await feeder.publish(options.tasks);
    feeder.start();
    const recoveries: FaultReport['recoveries'] = [];
    for (let f = 0; f < faults.length; f++) {
      // A fault every FAULT_EVERY runs, so the later ones hit a system still recovering from the earlier ones.
      const at = FAULT_EVERY * (f + 1);
      await until(() => distinctRuns(ledger) >= at, `${at} tasks run before '${faults[f]!.label}'`, 180_000);
      const before = ledgerIds(ledger).length;
      const injected = Date.now();
      // Recovered: the ledger has moved on by a handful of runs since the fault (watched while it is injected,
      // so work the surviving workers do meanwhile counts). The feeder keeps a backlog larger than that
      // waiting, however fast or slow the machine is, so a ledger that stops moving is a stall, never the
      // work running out.
      let recoveredAt = 0;
      const recovered = until(() => ledgerIds(ledger).length >= before + RECOVERED_AFTER, `progress after '${faults[f]!.label}'`, 180_000).then(() => (recoveredAt = Date.now()));
      trace(`injecting '${faults[f]!.label}' at ${before} runs`);
      await faults[f]!.inject(ctx);
      trace(`injected '${faults[f]!.label}'`);
      await recovered;
      recoveries.push({ fault: faults[f]!.label, recoverMs: recoveredAt - injected });
    }
    trace('faults done; stopping the feeder');
    await feeder.stop();
    const ids = feeder.ids;
    const notRun = (): string[] => {
      const ran = new Set(ledgerIds(ledger));
      return ids.filter((id) => !ran.has(id));
    };
    await until(() => notRun().length === 0, 'every task to run', 300_000, async () => {
      const missing = notRun();
      return `${missing.length} of ${ids.length} enqueued never ran (${missing.slice(0, 3).join(', ')}…); queues: ${JSON.stringify(await app.transport.stats())}`;
    });
    const totalMs = Date.now() - t0;
    // The killed worker's unacknowledged messages run again after the visibility timeout; let them, so the
    // duplicate count is final.
    await until(async () => (await app.transport.stats()).every((s) => s.ready + s.scheduled + s.unacked === 0), 'the queue to drain', 120_000).catch(async (error: unknown) =>
      trace(`${String(error)}; queues: ${JSON.stringify(await app.transport.stats().catch(String))}`),
    );
    const runs = ledgerIds(ledger);
    const distinct = new Set(runs);
    const lost = ids.filter((id) => !distinct.has(id)).length;
    return {
      engine: setup.engine,
      upFront: options.tasks,
      enqueued: ids.length,
      completed: ids.length - lost,
      lost,
      duplicates: runs.length - distinct.size,
      recoveries,
      sigtermExit,
      sigtermOutput,
      notApplicable: setup.notApplicable,
      totalMs,
    };
  } finally {
    await feeder.stop();
    for (const w of all) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await Promise.all(all.map((w) => w.exited));
    await app.close().catch(() => {});
  }
}

export function distinctRuns(ledger: string): number {
  return new Set(ledgerIds(ledger)).size;
}

/**
 * Keeps at least BACKLOG tasks waiting (published, not yet run) while the faults are injected, so that every
 * fault lands on busy workers and there is always work to show recovery with. Only ids whose publish the
 * broker confirmed count as enqueued; a publish refused during a fault (the broker down for longer than the
 * producer's retries) is counted as refused, and tried again with new ids. With `limit`, it stops once that many
 * are enqueued.
 */
export class Feeder {
  readonly ids: string[] = [];
  /** Publishes the producer reported as failed (their ids are not in `ids`). */
  refused = 0;
  private running: Promise<void> | undefined;
  private active = false;
  private sent = 0;

  constructor(
    private readonly options: {
      /** Sends one task (the n-th the feeder sends) and says when the broker has it. */
      send: (n: number) => { id: string; sent: Promise<unknown> };
      /** Distinct tasks run so far. */
      ran: () => number;
      limit?: number;
    },
  ) {}

  /** Sends `count` (in batches of 500); rejects if any of them was refused, after counting the others. */
  async publish(count: number): Promise<void> {
    const limit = this.options.limit ?? Number.POSITIVE_INFINITY;
    for (let i = 0; i < count; i += 500) {
      const size = Math.min(500, count - i, limit - this.ids.length);
      if (size <= 0) return;
      const results = Array.from({ length: size }, () => this.options.send(this.sent++));
      trace(`publishing ${results.length} (${this.ids.length} enqueued so far)`);
      const settled = await Promise.allSettled(results.map((r) => r.sent));
      const refused = settled.filter((s) => s.status === 'rejected');
      settled.forEach((s, k) => s.status === 'fulfilled' && this.ids.push(results[k]!.id));
      this.refused += refused.length;
      trace(`published ${results.length - refused.length}${refused.length ? `, ${refused.length} refused` : ''}`);
      if (refused.length) throw (refused[0] as PromiseRejectedResult).reason;
    }
  }

  start(): void {
    this.active = true;
    const limit = this.options.limit ?? Number.POSITIVE_INFINITY;
    this.running = (async () => {
      while (this.active) {
        const waiting = this.ids.length - this.options.ran();
        if (waiting < BACKLOG && this.ids.length < limit) await this.publish(BACKLOG).catch((error: unknown) => trace(`publish refused: ${String(error)}`));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
  }

  async stop(): Promise<void> {
    this.active = false;
    await this.running;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Where the hand-kept part of FAULTS.md starts: everything below it is kept when the report is regenerated. */
export const KEPT_BY_HAND = '<!-- Below this line: kept by hand when the report above is regenerated. -->';
const CLUSTER_BEGIN = '<!-- Generated by test/faults/nats-cluster.test.ts: from here to the end marker. -->';
const CLUSTER_END = '<!-- End of the part generated by test/faults/nats-cluster.test.ts. -->';

/**
 * Writes one generated part of the report into `target`, keeping the others: `engines` (faults.test.ts, the top
 * of the file), `cluster` (nats-cluster.test.ts, a section between its markers below it), and what follows
 * KEPT_BY_HAND (never generated). Each test file rewrites only its own part, so either can run alone.
 */
export function writeFaultsReport(target: string, part: 'engines' | 'cluster', markdown: string): void {
  const previous = existsSync(target) ? readFileSync(target, 'utf8') : '';
  const keptAt = previous.indexOf(KEPT_BY_HAND);
  const kept = keptAt < 0 ? '' : previous.slice(keptAt);
  const generated = keptAt < 0 ? previous : previous.slice(0, keptAt);
  const begin = generated.indexOf(CLUSTER_BEGIN);
  const end = generated.indexOf(CLUSTER_END);
  const hasCluster = begin >= 0 && end > begin;
  let engines = (hasCluster ? generated.slice(0, begin) : generated).trimEnd();
  let cluster = hasCluster ? generated.slice(begin + CLUSTER_BEGIN.length, end).trim() : '';
  if (part === 'engines') engines = markdown.trimEnd();
  else cluster = markdown.trim();
  const parts = [engines, cluster && `${CLUSTER_BEGIN}\n\n${cluster}\n\n${CLUSTER_END}`, kept.trimEnd()].filter(Boolean);
  writeFileSync(target, `${parts.join('\n\n')}\n`);
}

/** The report as Markdown: one table row per engine, then what was injected and how. */
export function faultsMarkdown(reports: FaultReport[], command: string): string {
  const lines = [
    '# Fault injection',
    '',
    'Generated by the fault-injection suite (`test/faults/faults.test.ts`); do not edit by hand.',
    '',
    `- Command: \`${command}\``,
    `- Date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    `- Workers: \`fennel worker -P process -c 2 --grace 60\`, two at a time, \`FENNEL_VISIBILITY_TIMEOUT_SEC=3\`; each task appends its id to a ledger file, then sleeps. Published up front: ${reports.map((r) => `${r.engine} ${r.upFront}`).join(', ')}. A fault every 200 runs; until the last has recovered, the driver keeps 500 tasks waiting, so how many are enqueued depends on how long the faults take (RabbitMQ's restart is the longest).`,
    '',
    '| Engine | Enqueued | Completed | Lost | Run more than once | SIGTERMed worker | Total time |',
    '| --- | ---: | ---: | ---: | ---: | --- | ---: |',
    ...reports.map((r) => `| ${r.engine} | ${r.enqueued} | ${r.completed} | **${r.lost}** | ${r.duplicates} | ${r.sigtermExit} | ${(r.totalMs / 1000).toFixed(1)} s |`),
    '',
    '## Time to recover',
    '',
    `From the moment a fault was injected until the ledger had moved on by ${RECOVERED_AFTER} more runs (more than the running workers' prefetch windows hold, so work already in hand does not count as recovery).`,
    '',
    '| Engine | Fault | Time to recover |',
    '| --- | --- | ---: |',
    ...reports.flatMap((r) => r.recoveries.map((x) => `| ${r.engine} | ${x.fault} | ${(x.recoverMs / 1000).toFixed(2)} s |`)),
    '',
    '## Not injected',
    '',
    ...reports.flatMap((r) => r.notApplicable.map((n) => `- ${r.engine}: ${n}`)),
    '',
    'Lost must be 0 on every engine (the suite fails otherwise). Runs more than once are allowed (at-least-once):',
    "they are the tasks a killed worker or slot had started but not acknowledged, and messages a broken connection",
    'returned to the queue.',
    '',
  ];
  return lines.join('\n');
}
