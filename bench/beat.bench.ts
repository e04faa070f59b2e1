// Beat drift (issue #15), one section of BENCHMARKS.md (`npm run bench -- beat`): how late each fire of an
// `every: 1` schedule is sent, over FIRES fires, by `fennel beat` on SQLite, Redis and RabbitMQ (its lease and state
// in Redis), and by Python Celery's `celery beat` on Redis beside it.
//
// Fennel: `node bin/fennel.js beat --app bench/beat-tasks.ts --log-format json` (compiled, as users run it). Each fire
// logs one JSON line after the broker confirmed it, with `due` (the schedule's due time: whole seconds, aligned to
// the epoch) and `lateMs` (the clock when the send was confirmed minus the due time). Celery: `celery -A
// celery_beat beat` (bench/peers/celery_beat.py) with `timedelta(seconds=1)`; it logs "Scheduler: Sending due task"
// just before each send, with a millisecond timestamp. Celery's interval schedule has no fixed due times: each is
// one second after the previous fire was reserved, so its lateness is the gap between two fires minus one second;
// Fennel's is measured against fixed due times, which also makes the accumulated drift (the last fire's lateness
// against the timeline of the first) visible. Celery's timestamps are taken before its send and Fennel's after, so
// the comparison is, if anything, tilted towards Celery by one publish (about a millisecond).
// The first fire of each run is left out (it is sent at start, up to a second after its due time, by design).
// Nothing consumes the fires: the queue is dropped after the run. Redis database 15 (the benchmarks'), flushed.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { AMQP_URL } from './amqp.bench.ts';
import { REDIS_URL, flush } from './redis.bench.ts';
import { CELERY_PYTHON, FENNEL_BIN, median, percentile, ROOT, tempDatabase } from './support.ts';

/** Fires measured per run (after the first, which is left out); FENNEL_BENCH_BEAT_FIRES for a quick look. */
const FIRES = Number(process.env['FENNEL_BENCH_BEAT_FIRES'] || 60);

type Peer = 'fennel-sqlite' | 'fennel-redis' | 'fennel-amqp' | 'celery-redis';
const TITLES: Record<Peer, string> = {
  'fennel-sqlite': 'Fennel, SQLite',
  'fennel-redis': 'Fennel, Redis',
  'fennel-amqp': 'Fennel, RabbitMQ (lease and state in Redis)',
  'celery-redis': 'Celery 5 beat, Redis',
};

interface Run {
  /** Lateness of each fire against its due time, ms (Fennel's; Celery's interval schedule has no fixed due times). */
  lateMs: number[];
  /** Each gap between two fires minus one second, ms (both). */
  gapErrorMs: number[];
  /** The last fire's lateness against the timeline of the first: (last − first send) − (n − 1) s. */
  driftMs: number;
}

/** Reads lines of a child's stdout and stderr, calling `onLine` for each. */
function lines(child: ChildProcess, onLine: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    let buffer = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      buffer += chunk;
      for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
        onLine(buffer.slice(0, i));
        buffer = buffer.slice(i + 1);
      }
    });
  }
}

/** Runs `command` until FIRES + 1 fires were read by `parse` (a send time and, where known, a lateness), then stops it. */
async function collect(command: string, args: string[], options: { cwd: string; env: Record<string, string> }, parse: (line: string) => { sentAt: number; lateMs?: number } | undefined): Promise<Run> {
  const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const fires: Array<{ sentAt: number; lateMs?: number }> = [];
  const tail: string[] = [];
  const done = new Promise<void>((resolve, reject) => {
    lines(child, (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      const fire = parse(line);
      if (fire) fires.push(fire);
      if (fires.length > FIRES) resolve();
    });
    child.on('exit', (code) => reject(new Error(`${command} exited (${code}) after ${fires.length} fires:\n${tail.join('\n')}`)));
  });
  const timeout = setTimeout(() => child.kill('SIGKILL'), (FIRES + 30) * 1000);
  try {
    await done;
  } finally {
    clearTimeout(timeout);
    child.removeAllListeners('exit');
    child.kill('SIGTERM');
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
  }
  const measured = fires.slice(1);
  const gaps = measured.slice(1).map((f, i) => f.sentAt - measured[i]!.sentAt - 1000);
  return {
    lateMs: measured.flatMap((f) => (f.lateMs === undefined ? [] : [f.lateMs])),
    gapErrorMs: gaps,
    driftMs: measured.at(-1)!.sentAt - measured[0]!.sentAt - (measured.length - 1) * 1000,
  };
}

async function runFennel(peer: Exclude<Peer, 'celery-redis'>): Promise<Run> {
  const db = peer === 'fennel-sqlite' ? tempDatabase() : undefined;
  const broker = db?.url ?? (peer === 'fennel-redis' ? REDIS_URL : AMQP_URL);
  const queue = `bench-beat-${randomUUID().slice(0, 8)}`;
  try {
    return await collect(
      process.execPath,
      [FENNEL_BIN, 'beat', '--app', 'bench/beat-tasks.ts', '--log-format', 'json'],
      { cwd: ROOT, env: { FENNEL_BROKER_URL: broker, FENNEL_RESULT_BACKEND: peer === 'fennel-amqp' ? REDIS_URL : '', FENNEL_BEAT_GROUP: queue, BENCH_BEAT_QUEUE: queue } },
      (line) => {
        if (!line.includes('Sending due task')) return undefined;
        const entry = JSON.parse(line) as { time: number; lateMs: number };
        return { sentAt: entry.time, lateMs: entry.lateMs };
      },
    );
  } finally {
    db?.cleanup();
    if (peer === 'fennel-amqp') await deleteAmqpQueue(queue);
  }
}

async function runCelery(): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'fennel-bench-beat-'));
  try {
    return await collect(
      CELERY_PYTHON,
      ['-m', 'celery', '-A', 'celery_beat', 'beat', '-s', join(dir, 'schedule'), '--loglevel', 'INFO'],
      { cwd: join(ROOT, 'bench', 'peers'), env: { CELERY_BENCH_URL: REDIS_URL, BENCH_BEAT_QUEUE: `bench-beat-${randomUUID().slice(0, 8)}` } },
      (line) => {
        // [2026-12-06 06:00:01,004: INFO/MainProcess] Scheduler: Sending due task bench.tick (bench.noop)
        const match = /^\[(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d),(\d{3}): INFO\/MainProcess\] Scheduler: Sending due task/.exec(line);
        return match ? { sentAt: Date.parse(`${match[1]}T${match[2]}.${match[3]}`) } : undefined;
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function deleteAmqpQueue(queue: string): Promise<void> {
  const connection = await connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    await channel.deleteQueue(queue);
  } finally {
    await connection.close();
  }
}

function celeryAvailable(): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(CELERY_PYTHON, ['-c', 'import celery, redis'], { stdio: 'ignore' });
    child.on('exit', (code) => resolve(code === 0));
    child.on('error', () => resolve(false));
  });
}

export async function beatSection(runs = 1): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  const peers: Peer[] = ['fennel-sqlite', 'fennel-redis', 'fennel-amqp'];
  const celery = await celeryAvailable();
  if (celery) peers.push('celery-redis');
  else console.error(`${CELERY_PYTHON} cannot import celery and redis: the Celery column is left out`);
  await flush();
  const results = new Map<Peer, Run[]>(peers.map((p) => [p, []]));
  for (let round = 1; round <= runs; round++) {
    for (const peer of peers) {
      console.error(`beat: ${peer}, round ${round}/${runs} (${FIRES + 1} fires, about ${FIRES + 3} s)`);
      results.get(peer)!.push(peer === 'celery-redis' ? await runCelery() : await runFennel(peer));
    }
  }
  await flush();
  const load1 = loadavg();
  const rows = peers.map((peer) => {
    const all = results.get(peer)!;
    const late = all.flatMap((r) => r.lateMs);
    const gaps = all.flatMap((r) => r.gapErrorMs);
    const cells = late.length ? [median(late).toFixed(1), percentile(late, 90).toFixed(1), Math.max(...late).toFixed(1)] : ['–', '–', '–'];
    return `| ${TITLES[peer]} | ${cells.join(' | ')} | ${median(gaps).toFixed(1)} | ${Math.max(...gaps.map(Math.abs)).toFixed(1)} | ${median(all.map((r) => r.driftMs)).toFixed(0)} |`;
  });
  const fennelMedians = peers.filter((p) => p.startsWith('fennel')).map((p) => median(results.get(p)!.flatMap((r) => r.lateMs)));
  const aimMet = fennelMedians.every((m) => m < 20);
  return `## Beat: drift of an every-second schedule

Issue #15. How late each fire of an \`every: 1\` schedule is sent, over ${FIRES} fires per run (after the first, sent at
start), by \`fennel beat\` on each engine and by Python Celery's \`celery beat\` on Redis. Lateness is the time the
broker confirmed the send minus the fire's due time (whole seconds, aligned to the epoch): Fennel's only, as Celery's
interval schedule has no fixed due times (each is a second after the previous fire). Measured the same way for
both: the gap between two fires minus one second (Celery's timestamp is taken just before its send, Fennel's after
the broker confirmed it), and the drift, the last fire against the timeline of the first: (last send − first send)
− ${FIRES - 1} s. Nothing consumes the fires. ${runs} run(s) of each; cells are over all fires of all runs.

- Command: \`npm run bench -- beat\` (bench/beat.bench.ts, bench/beat-tasks.ts, bench/peers/celery_beat.py)
- Machine: ${availableParallelism()} CPUs (nproc), ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}; load average ${load0.map((l) => l.toFixed(2)).join(' ')} at the start and ${load1.map((l) => l.toFixed(2)).join(' ')} at the end (1, 5, 15 min)
- Brokers: \`sqlite://\` a temp file; \`${REDIS_URL}\`; \`${AMQP_URL.replace(/\/\/[^@/]*@/, '//')}\`
- Date: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC

| beat | lateness: median, ms | p90, ms | max, ms | gap − 1 s: median, ms | largest, ms | drift after ${FIRES} fires, ms |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

### Aims

- Fennel's median lateness under 20 ms on every engine: ${aimMet ? 'met' : 'NOT met'} (${fennelMedians.map((m) => m.toFixed(1)).join(', ')} ms).`;
}
