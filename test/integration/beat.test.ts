// Periodic tasks with real processes (#15): `fennel beat`, `fennel worker --beat` and `fennel schedules` on the
// tasks module fixtures/beat/beat_tasks.ts, whose schedules come from the environment (BEAT_SCHEDULES), so one
// module serves every case. Each run of a fire appends "<task id> <marker>" to a file (BEAT_OUT); a fire's task id
// is derived from its schedule's name and due time (fireId), so the file says which due second ran how often.
//
//   1. takeover, on sqlite://, redis:// and amqp:// (RabbitMQ, its lease, state and fire claims in a Redis result
//      backend): two beats and a worker, an `every: 1` schedule for 20 s; the leader is SIGKILLed about 7 s in;
//      and a handover on redis://: the leader SIGTERMed (it gives its lease up; the follower asks every half second)
//   2. catchUp on restart (sqlite://): 'none', 'last', 'all' and the default, a beat stopped for 10 s
//   3. a schedule firing a chain (sqlite://): its final result is stored, every fire
//   4. `fennel worker --beat` (redis://), and `fennel schedules` (text and --json) while it leads and after it stopped
//   5. interop (redis://): a Python Celery worker (Debian's /usr/bin/python3, celery 5.2; fixtures/beat/beat_celery.py)
//      runs the fires of a task by name that only it registers, and stores SUCCESS in the Redis backend
//   6. two apps in different beat groups with a schedule of the same name (redis://): both fire
// The cases run at once (in two waves: see secondWave), each with its own beat group, queue, schedule names and
// output file, so they share the Redis database REDIS_DB.beat (flushed before and after) without seeing each other.
// Missing Redis, RabbitMQ or Celery skips the cases that need it with one line, except on CI (CI=true), where it
// fails.
//
// What ran is counted exactly, never waited for by a guess: the edges of a run (the first due time a leader fired,
// the last one a stopped or killed beat fired, when a beat took the lead) are read from the beats' JSON logs, and
// every whole second in between must have run exactly the number of times the rules say. A queue is known to be
// drained when a fence task, sent after the beats stopped, has run: the worker runs one task at a time (-c 1,
// prefetch 1) in queue order. Fires are sent with `expires: 600`: with the default (the period, 1 s) a fire that
// waits more than a second for a worker expires unrun, which a busy two-core machine makes happen, by design.
// Timing is asserted only as a liveness bound (a follower takes over within the lease time + a margin).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Fennel } from '../../src/index.ts';
import { DEFAULT_LEASE_MS } from '../../src/beat/beat.ts';
import { beatStatus } from '../../src/beat/status.ts';
import { ON_TIME_MS } from '../../src/beat/plan.ts';
import { fireId } from '../../src/beat/schedule.ts';
import { directQueue } from '../../src/protocol/queues.ts';
import type { BeatCase } from './fixtures/beat/beat_tasks.ts';
import { fileLines, runCli, runCliToEnd, stopProcess, tempDb, waitFor, type RunningWorker } from '../support/process.ts';
import { celerySkipReason, startPython, stopPython, type PythonProcess } from '../support/python.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest, testRedisClient } from '../support/services.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures/beat');
const TASKS = join(FIXTURES, 'beat_tasks.ts');
const DB = REDIS_DB.beat;
const REDIS_URL = redisUrlForTest(DB);
/** How long a process may take to start (tsx compiles the tasks module; a dozen start at once on two cores). */
const READY_MS = 120_000;
/** The longest any one thing is waited for once everything runs: a run, a result, a takeover's log line. */
const WAIT_MS = 90_000;
/** How long after its lease lapses a follower may take to lead, at most: a liveness bound, not a benchmark. */
const TAKEOVER_MARGIN_MS = 5_000;
/** Seconds a fire may wait for the worker (see above). */
const EXPIRES_SEC = 600;
const SECOND = 1000;

const redisSkip = await redisSkipReason();
const amqpSkip = (await rabbitSkipReason()) || redisSkip;

const celerySkip = await celerySkipReason();
const run = randomUUID().slice(0, 8);

/** One line of a beat's or worker's JSON log (pino), with the fields the beat's lines carry. */
interface LogEntry {
  time: number;
  level: number;
  msg: string;
  schedule?: string;
  id?: string;
  due?: string;
  caughtUp?: unknown;
  skipped?: number;
  leader?: string;
}

/** A started `fennel` process, its JSON log parsed line by line as it arrives. */
interface Proc {
  /** The beat's name (`-n`, or `<node>/beat` in a worker), or the worker's node name. */
  name: string;
  run: RunningWorker;
  log: LogEntry[];
}

/**
 * Parses a process's stdout as JSON lines. A line may arrive in two chunks (a pipe read can end anywhere, and pino
 * writes several lines at once when they pile up), so lines are cut from a buffer here, not from each chunk.
 */
function follow(name: string, proc: RunningWorker): Proc {
  const log: LogEntry[] = [];
  let buffered = '';
  proc.child.stdout!.setEncoding('utf8');
  proc.child.stdout!.on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        log.push(JSON.parse(line) as LogEntry);
      } catch {
        // not a log line
      }
    }
  });
  return { name, run: proc, log };
}

function start(name: string, args: string[], env: Record<string, string>): Proc {
  return follow(name, runCli(args, env));
}

/** When the beat logged that it leads (its log's time, ms), or undefined. */
function ledAt(beat: Proc): number | undefined {
  return beat.log.find((e) => e.msg === `beat: ${beat.name} leads`)?.time;
}

interface Sent {
  due: number;
  id: string;
  caughtUp: boolean;
  at: number;
}

/** The fires of `schedule` the beat logged as sent ("Scheduler: Sending due task …"), in order. */
function sentBy(beat: Proc, schedule: string): Sent[] {
  return beat.log
    .filter((e) => e.schedule === schedule && e.msg.startsWith('Scheduler: Sending due task') && e.due)
    .map((e) => ({ due: Date.parse(e.due!), id: e.id!, caughtUp: e.caughtUp === true, at: e.time }));
}

/** The beat group of each schedule the cases register (schedule names are unique to a case and a run). */
const groupOf = new Map<string, string>();

/** The task id of a schedule's fire due at `due` (part: a workflow's n-th task), as every beat of its group derives it (fireId). */
function taskIdOf(schedule: string, due: number, part = 0): string {
  assert.ok(groupOf.has(schedule), `schedule ${schedule} belongs to a case`);
  return fireId(schedule, due, part, groupOf.get(schedule));
}

const floorSecond = (ms: number): number => Math.floor(ms / SECOND) * SECOND;
const iso = (ms: number): string => new Date(ms).toISOString();

/** Runs per task id in an output file ("<task id> <marker>" lines). */
function tally(out: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of fileLines(out)) {
    const id = line.split(' ')[0]!;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/** Whole seconds from `from` to `to` (inclusive), by `step`. */
function seconds(from: number, to: number, step = SECOND): number[] {
  const out: number[] = [];
  for (let due = from; due <= to; due += step) out.push(due);
  return out;
}

/** How many times a due second may have run: [min, max] and why. */
type Rule = (due: number) => { min: number; max: number; why: string };

/**
 * Checks every due second in [from, to] of `schedule` against `rule`, reading the runs from `out` (part: which task
 * of a workflow's fire). Fails with a timeline of every second (its time relative to `origin`, runs, allowed).
 */
function assertSeconds(out: string, schedule: string, from: number, to: number, rule: Rule, origin: number, part = 0, step = SECOND): void {
  const counts = tally(out);
  const rows = seconds(from, to, step).map((due) => {
    const ran = counts.get(taskIdOf(schedule, due, part)) ?? 0;
    const { min, max, why } = rule(due);
    return { due, ran, min, max, why, ok: ran >= min && ran <= max };
  });
  const bad = rows.filter((r) => !r.ok);
  const timeline = rows.map((r) => `${r.ok ? ' ' : '!'} ${iso(r.due)} (${r.due >= origin ? '+' : '−'}${Math.abs(r.due - origin) / SECOND} s) ran ${r.ran}, allowed ${r.min === r.max ? r.min : `${r.min}..${r.max}`}: ${r.why}`).join('\n');
  assert.equal(bad.length, 0, `${schedule}: ${bad.length} due second(s) ran a wrong number of times:\n${timeline}`);
}

/** No task id in `out` ran twice; every id is one of `known` (fires of the case's schedules, fences). */
function assertOnceAndKnown(out: string, known: Set<string>): void {
  const counts = tally(out);
  const twice = [...counts].filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], `task ids that ran more than once:\n${fileLines(out).join('\n')}`);
  const unknown = [...counts.keys()].filter((id) => !known.has(id));
  assert.deepEqual(unknown, [], 'every run is a fire of a due second in the checked range, or a fence');
}

/** Task ids of every fire of `schedule` due in [from, to] (parts 0 … parts-1). */
function fireIds(schedule: string, from: number, to: number, parts = 1, step = SECOND): string[] {
  return seconds(from, to, step).flatMap((due) => Array.from({ length: parts }, (_, part) => taskIdOf(schedule, due, part)));
}

interface CaseEnv {
  broker: string;
  backend: string;
  queue: string;
  group: string;
  out: string;
  schedules: BeatCase[];
}

function envOf(c: CaseEnv): Record<string, string> {
  for (const schedule of c.schedules) groupOf.set(schedule.name, c.group);
  return {
    FENNEL_BROKER_URL: c.broker,
    FENNEL_RESULT_BACKEND: c.backend,
    FENNEL_DEFAULT_QUEUE: c.queue,
    FENNEL_BEAT_GROUP: c.group,
    BEAT_OUT: c.out,
    BEAT_SCHEDULES: JSON.stringify(c.schedules),
  };
}

/** `fennel worker` running one task at a time, in queue order (so that a fence means the queue is drained). */
function startWorker(c: CaseEnv, node: string, extra: string[] = [], queues = c.queue): Proc {
  return start(node, ['worker', '--app', TASKS, '-P', 'async', '-c', '1', '--prefetch-multiplier', '1', '-n', node, '-Q', queues, '--broadcast-queues', '', ...extra], envOf(c));
}

function startBeat(c: CaseEnv, name: string): Proc {
  return start(name, ['beat', '--app', TASKS, '-n', name], envOf(c));
}

/** Stops a process with SIGTERM and checks that it exits 0 (a beat gives its lease up first). */
async function stopCleanly(p: Proc): Promise<void> {
  await stopProcess(p.run, 'SIGTERM');
  const { code, signal } = await p.run.exited;
  assert.equal(code, 0, `${p.name} exited ${code ?? signal} on SIGTERM:\n${p.run.lines.slice(-20).join('\n')}`);
}

/**
 * Sends a fence task to the case's queue once its beats have stopped and waits until it has run: the worker runs
 * its queue in order, one task at a time, so every fire sent before it has run (or expired) by then. Its id.
 */
async function fence(c: CaseEnv, task = 'beat.record'): Promise<string> {
  const app = new Fennel({ broker: c.broker, backend: c.backend });
  try {
    const marker = `fence-${randomUUID()}`;
    const result = app.sendTask(task, [marker], { queue: c.queue });
    await result.sent;
    await waitFor(() => fileLines(c.out).some((l) => l === `${result.id} ${marker}`), `the fence task to run in ${c.queue}`, WAIT_MS);
    return result.id;
  } finally {
    await app.close();
  }
}

interface ScheduleStatusJson {
  leader: { beat: string; leaseUntil: string } | null;
  schedules: Array<{ name: string; when: string; task: string; catchUp: string; expiresSec: number; lastDue: string | null; lastSentAt: string | null; lastTaskId: string | null; lastBeat: string | null; next: string | null }>;
}

/** `fennel schedules` (--json: parsed) with the case's app, broker and beat group. */
async function schedules(c: CaseEnv, json: true): Promise<ScheduleStatusJson>;
async function schedules(c: CaseEnv, json: false): Promise<string[]>;
async function schedules(c: CaseEnv, json: boolean): Promise<ScheduleStatusJson | string[]> {
  const result = await runCliToEnd(['schedules', '--app', TASKS, ...(json ? ['--json'] : [])], envOf(c), READY_MS);
  assert.equal(result.code, 0, `fennel schedules failed:\n${[...result.stdout, ...result.stderr].join('\n')}`);
  return json ? (JSON.parse(result.stdout.at(-1)!) as ScheduleStatusJson) : result.stdout;
}

/** Kills whatever is still running of a case (after a failure); a clean run has stopped them already. */
async function killAll(procs: Proc[]): Promise<void> {
  await Promise.all(procs.map((p) => stopProcess(p.run, 'SIGKILL')));
}

interface Engine {
  key: 'sqlite' | 'redis' | 'amqp';
  skip: string | false;
  urls(): { broker: string; backend: string };
  cleanup(c: CaseEnv, nodes: string[]): Promise<void>;
}

let tmp: TempDir;
before(async () => {
  tmp = makeTempDir('fennel-beat-');
  if (!redisSkip) await flushRedisDb(DB);
});
after(async () => {
  tmp?.remove();
  if (!redisSkip) await flushRedisDb(DB);
});

const ENGINES: Engine[] = [
  {
    key: 'sqlite',
    skip: false,
    urls: () => {
      const db = tempDb();
      after(() => db.cleanup());
      return { broker: db.url, backend: db.url };
    },
    cleanup: async () => {},
  },
  { key: 'redis', skip: redisSkip, urls: () => ({ broker: REDIS_URL, backend: REDIS_URL }), cleanup: async () => {} },
  {
    key: 'amqp',
    skip: amqpSkip,
    // Beat keeps its lease and state, and on amqp:// claims each fire, in the result backend.
    urls: () => ({ broker: RABBIT_URL, backend: REDIS_URL }),
    // The work queue and each worker's durable direct queue: names of this run only.
    cleanup: (c, nodes) => removeRabbitQueues([c.queue, ...nodes.map(directQueue)]),
  },
];

/**
 * The cases start in two waves: the takeovers and the catch-up (the longest runs) first, the others once those have
 * their processes ready (or failed to start them). Twenty Node processes starting at once on two cores take half a
 * minute before the first run can begin; in two waves the second one starts while the first one runs. A second-wave
 * case waits at most SECOND_WAVE_CAP_MS (in case the first wave was filtered out by a test name pattern).
 */
const FIRST_WAVE = ENGINES.filter((e) => !e.skip).length + 1;
const SECOND_WAVE_CAP_MS = 45_000;
let firstWaveReady = 0;
let releaseSecondWave: () => void = () => {};
const secondWaveGate = new Promise<void>((resolve) => (releaseSecondWave = resolve));

/** A first-wave case's signal that its processes are ready (or will not be); idempotent. */
function firstWaveMember(): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    if (++firstWaveReady >= FIRST_WAVE) releaseSecondWave();
  };
}

/** Resolves when the first wave is ready, or after SECOND_WAVE_CAP_MS. */
function secondWave(): Promise<void> {
  return Promise.race([secondWaveGate, new Promise<void>((resolve) => setTimeout(resolve, SECOND_WAVE_CAP_MS).unref())]);
}

/**
 * Two beats and a worker on one `every: 1` schedule; the leader ends: SIGKILLed about 7 s in (a run of about 20 s),
 * or SIGTERMed about 4 s in (it stops firing and gives its lease up).
 *
 * Every due second between the leader's first fire and the last one it logged runs exactly once. After a SIGKILL, the
 * next one may have been sent (its log line not yet written or read) just before the kill: at most once, and not at
 * all if the kill came before it was due; a SIGTERMed leader logs all it sent. The follower takes over when the lease
 * lapses (SIGKILL: within its 10 s, + a margin) or at its next ask (SIGTERM: it asks every half second, + a margin);
 * the seconds that fell due meanwhile follow catchUp 'none': skipped, but for the one on time when it took over (the
 * second it led in, less than ON_TIME_MS old; or the next, if the second turned as it led: its log says which), which
 * runs once. Every second after that runs exactly once, up to the last one the survivor logged before it was stopped;
 * nothing later runs. Whichever beat sent a due second, or how often, only its runs are counted. The survivor logs
 * how many it skipped.
 */
async function takeover(engine: Engine, t: TestContext, how: 'SIGKILL' | 'SIGTERM', wave: 'first' | 'second'): Promise<void> {
  const killed = how === 'SIGKILL';
  const startedAt = Date.now();
  const tag = `${killed ? 'kill' : 'stop'}-${engine.key}-${run}`;
  const schedule = `tick-${tag}`;
  const c: CaseEnv = { ...engine.urls(), queue: `beat-takeover-${tag}`, group: `takeover-${tag}`, out: tmp.file(`takeover-${tag}.log`), schedules: [{ name: schedule, every: 1, expires: EXPIRES_SEC }] };
  const node = `w-takeover-${tag}@beat`;
  const procs: Proc[] = [];
  const ready = wave === 'first' ? firstWaveMember() : () => {};
  if (wave === 'second') await secondWave();
  try {
    const worker = startWorker(c, node);
    const beats = ['a', 'b'].map((n) => startBeat(c, `beat-${n}-${tag}`));
    procs.push(worker, ...beats);
    await Promise.all([worker.run.waitForLine(/worker ready/, READY_MS), ...beats.map((b) => b.run.waitForLine(/beat ready/, READY_MS))]);
    ready();
    await waitFor(() => beats.some((b) => ledAt(b) !== undefined), 'one of the beats to lead', READY_MS);
    const leader = beats.find((b) => ledAt(b) !== undefined)!;
    const follower = beats.find((b) => b !== leader)!;
    await waitFor(() => follower.log.some((e) => e.leader === leader.name), `${follower.name} to follow ${leader.name}`, READY_MS);
    const leadAt = ledAt(leader)!;
    const first = floorSecond(leadAt);

    // Any process reads the same leader from the engine (what `fennel schedules` prints; read here in-process, as a
    // CLI's start can take seconds on a busy machine and would delay the kill).
    const reader = new Fennel({ broker: c.broker, backend: c.backend, beatGroup: c.group });
    try {
      assert.equal((await beatStatus(reader)).leader?.beat, leader.name, 'the lease names the beat that logged that it leads');
    } finally {
      await reader.close();
    }

    // The end of the leader, just after a fire ran (so that the next one is surely not sent yet, but for a busy machine).
    const killDue = first + (killed ? 7 : 4) * SECOND;
    await waitFor(() => tally(c.out).has(taskIdOf(schedule, killDue)) || Date.now() > killDue + 5 * SECOND, `the fire due ${iso(killDue)} to run`, WAIT_MS);
    const killedAt = Date.now();
    leader.run.child.kill(how);
    const exit = await leader.run.exited;
    if (killed) assert.equal(exit.signal, 'SIGKILL');
    else assert.equal(exit.code, 0, `the leader exited ${exit.code ?? exit.signal} on SIGTERM`);
    const bound = killed ? DEFAULT_LEASE_MS : ON_TIME_MS / 2;

    await waitFor(() => ledAt(follower) !== undefined, `${follower.name} to take over`, bound + WAIT_MS);
    const tookOverAt = ledAt(follower)!;
    const take = floorSecond(tookOverAt);
    assert.ok(tookOverAt > killedAt, `${follower.name} led only after the ${how} (${iso(tookOverAt)} vs ${iso(killedAt)})`);
    assert.ok(tookOverAt - killedAt <= bound + TAKEOVER_MARGIN_MS, `took over ${tookOverAt - killedAt} ms after the ${how}: within ${bound} ms + ${TAKEOVER_MARGIN_MS} ms`);

    // The run: (SIGKILL) 20 s from the first lead, and at least three fires of the survivor have run.
    await waitFor(() => Date.now() >= first + (killed ? 20 : 0) * SECOND && [1, 2, 3].every((k) => tally(c.out).has(taskIdOf(schedule, take + k * SECOND))), 'the run to end with three fires after the takeover', WAIT_MS);
    await stopCleanly(follower);
    const fenceId = await fence(c);
    await stopCleanly(worker);

    const leaderSent = sentBy(leader, schedule);
    const survivorSent = sentBy(follower, schedule);
    assert.ok(leaderSent.length >= 3, `the leader logged ${leaderSent.length} fires before the ${how}`);
    const last = leaderSent.at(-1)!.due;
    const end = survivorSent.at(-1)!.due;
    // A leader fires the due time on time when it starts (less than ON_TIME_MS old): the second it led in, or the next
    // one if the second turned between its log line and its clock reading; from the logs, which one it was.
    const firstSent = leaderSent[0]!.due;
    assert.ok(firstSent === first || firstSent === first + SECOND, `the first fire (${iso(firstSent)}) is the second the leader led in (${iso(leadAt)})`);
    // The survivor's first fire past what the leader sent (a re-send of those would be the broker's or the claim's to
    // refuse, and is counted below as a run, not as a send).
    const onTime = survivorSent.find((s) => s.due > last + (killed ? SECOND : 0))!.due;
    assert.ok(onTime === take || onTime === take + SECOND, `the survivor's first new fire (${iso(onTime)}) is the second it took over in (${iso(tookOverAt)})`);
    const rule: Rule = (due) => {
      if (due < firstSent) return { min: 0, max: 0, why: 'before the first lead' };
      if (due <= last) return { min: 1, max: 1, why: 'the leader sent it (logged)' };
      if (due === onTime) return { min: 1, max: 1, why: `on time (less than ${ON_TIME_MS} ms old) when the survivor took over` };
      if (due > onTime && due <= end) return { min: 1, max: 1, why: 'the survivor leads' };
      if (due > end) return { min: 0, max: 0, why: 'after the survivor stopped' };
      if (killed && due === last + SECOND) return killedAt < due ? { min: 0, max: 0, why: 'due after the kill' } : { min: 0, max: 1, why: 'sent just before the kill (its log line may be lost)' };
      return { min: 0, max: 0, why: "no leader: catchUp 'none' skips it" };
    };
    assertSeconds(c.out, schedule, first - 3 * SECOND, end + 3 * SECOND, rule, first);
    assertOnceAndKnown(c.out, new Set([...fireIds(schedule, first, end), fenceId]));

    // The survivor logged how many it skipped: the seconds after the leader's last recorded fire up to one before its
    // first. A SIGTERMed leader recorded all it sent; a SIGKILLed one the last that ran, or the one before it if it
    // died between sending and recording.
    const ran = tally(c.out);
    const lastRan = Math.max(...seconds(first, onTime - SECOND).filter((due) => ran.has(taskIdOf(schedule, due))));
    const gap = (onTime - lastRan) / SECOND - 1;
    t.diagnostic(
      `started ${leadAt - startedAt} ms after the test began; led ${iso(leadAt)}, ${how} ${iso(killedAt)} (${killedAt - leadAt} ms in), the survivor led ${tookOverAt - killedAt} ms after it; ` +
        `fires ${iso(firstSent)} … ${iso(last)}, then ${iso(onTime)} … ${iso(end)}: ${gap} s skipped; the test took ${Date.now() - startedAt} ms`,
    );
    const skippedLine = follower.log.find((e) => e.schedule === schedule && typeof e.skipped === 'number');
    if (gap === 0 && !killed) assert.equal(skippedLine, undefined, 'the survivor skipped nothing');
    else {
      assert.ok(skippedLine, `the survivor logged the due times it skipped (${gap}):\n${follower.run.lines.join('\n')}`);
      assert.ok(skippedLine.skipped === gap || (killed && skippedLine.skipped === gap + 1), `skipped ${skippedLine.skipped}, the gap is ${gap} s${killed ? ' (or one more, not recorded by the dead leader)' : ''}`);
      assert.match(skippedLine.msg, /due time\(s\) passed while no beat led; skipped/);
    }
  } finally {
    ready();
    await killAll(procs);
    await engine.cleanup(c, [node]);
  }
}

describe('beat with real processes', { concurrency: true }, () => {
  for (const engine of ENGINES) {
    it(`takeover on ${engine.key}: two beats, the leader SIGKILLed; every second fires once but those due while none led (catchUp 'none')`, { skip: engine.skip }, (t) => takeover(engine, t, 'SIGKILL', 'first'));
  }
  const redisEngine = ENGINES.find((e) => e.key === 'redis')!;
  it("handover on redis: two beats, the leader SIGTERMed; the follower leads within its next ask, every second fires once (none is skipped unless the handover took a second)", { skip: redisEngine.skip }, (t) => takeover(redisEngine, t, 'SIGTERM', 'second'));

  it("catchUp on restart (sqlite): 'none' skips the gap and logs it, 'last' fires its latest second, 'all' every second of it, each once", async (t) => {
    const db = tempDb();
    const modes = [
      { label: 'none', catchUp: 'none' },
      { label: 'last', catchUp: 'last' },
      { label: 'all', catchUp: 'all' },
      { label: 'default', catchUp: undefined },
    ] as const;
    const names = Object.fromEntries(modes.map((m) => [m.label, `${m.label}-${run}`])) as Record<(typeof modes)[number]['label'], string>;
    const c: CaseEnv = {
      broker: db.url,
      backend: db.url,
      queue: `beat-catchup-${run}`,
      group: `catchup-${run}`,
      out: tmp.file('catchup.log'),
      schedules: modes.map((m) => ({ name: names[m.label], every: 1, expires: EXPIRES_SEC, ...(m.catchUp ? { catchUp: m.catchUp } : {}) })),
    };
    const procs: Proc[] = [];
    const ranAfter = (schedule: string, from: number): number => {
      const ran = tally(c.out);
      return seconds(floorSecond(from) + SECOND, floorSecond(from) + 60 * SECOND).filter((due) => ran.has(taskIdOf(schedule, due))).length;
    };
    const ready = firstWaveMember();
    try {
      const worker = startWorker(c, `w-catchup-${run}@beat`);
      const firstBeat = startBeat(c, `beat-first-${run}`);
      procs.push(worker, firstBeat);
      await Promise.all([worker.run.waitForLine(/worker ready/, READY_MS), firstBeat.run.waitForLine(/beat ready/, READY_MS)]);
      ready();
      await waitFor(() => ledAt(firstBeat) !== undefined, 'the first beat to lead', READY_MS);
      const firstLed = ledAt(firstBeat)!;
      await waitFor(() => Date.now() >= firstLed + 4 * SECOND && Object.values(names).every((s) => ranAfter(s, firstLed) >= 3), 'the first beat to run about 4 s', WAIT_MS);
      await stopCleanly(firstBeat);
      // It gave its lease up as it stopped (else the lease would lapse within 10 s, during the gap, anyway).
      const reader = new Fennel({ broker: c.broker, backend: c.backend, beatGroup: c.group });
      try {
        assert.equal((await beatStatus(reader)).leader, null, 'the stopped beat gave its lease up');
      } finally {
        await reader.close();
      }

      // The gap: no beat runs for 10 s.
      await new Promise((resolve) => setTimeout(resolve, 10 * SECOND));

      const secondBeat = startBeat(c, `beat-second-${run}`);
      procs.push(secondBeat);
      await secondBeat.run.waitForLine(/beat ready/, READY_MS);
      await waitFor(() => ledAt(secondBeat) !== undefined, 'the restarted beat to lead', READY_MS);
      const secondLed = ledAt(secondBeat)!;
      await waitFor(() => Date.now() >= secondLed + 4 * SECOND && Object.values(names).every((s) => ranAfter(s, secondLed) >= 3), 'the restarted beat to run about 4 s', WAIT_MS);
      await stopCleanly(secondBeat);
      const fenceId = await fence(c);
      await stopCleanly(worker);

      // No beat held the lease: the restarted one led at once, following nobody.
      assert.equal(secondBeat.log.filter((e) => e.leader !== undefined).length, 0, `the restarted beat followed nobody:\n${secondBeat.run.lines.join('\n')}`);
      const known = new Set([fenceId]);
      for (const { label, catchUp } of modes) {
        const schedule = names[label];
        const firstSent = sentBy(firstBeat, schedule);
        const secondSent = sentBy(secondBeat, schedule);
        const from = firstSent[0]!.due;
        const last = firstSent.at(-1)!.due;
        const onTime = secondSent.find((s) => !s.caughtUp && s.due > last)!.due;
        const end = secondSent.at(-1)!.due;
        assert.ok(onTime === floorSecond(secondLed) || onTime === floorSecond(secondLed) + SECOND, `${schedule}: the restarted beat's first on-time fire (${iso(onTime)}) is the second it led in (${iso(secondLed)})`);
        // The gap: due seconds after the last recorded fire (the stopped beat recorded all it sent) that were more
        // than ON_TIME_MS old when the restarted beat led.
        const gap = seconds(last + SECOND, onTime - SECOND);
        assert.ok(gap.length >= 9, `${schedule}: a gap of ${gap.length} s (the beat was stopped for 10 s)`);
        t.diagnostic(`${schedule}: fired ${iso(from)} … ${iso(last)}, stopped; a gap of ${gap.length} s; led again ${iso(secondLed)}, fired ${iso(onTime)} … ${iso(end)}`);
        const mode = catchUp ?? 'none';
        const caught = mode === 'all' ? gap : mode === 'last' ? [gap.at(-1)!] : [];
        assert.deepEqual(secondSent.filter((s) => s.caughtUp).map((s) => iso(s.due)), caught.map(iso), `${schedule}: the missed due times fired, logged as caught up`);
        const rule: Rule = (due) => {
          if (due < from) return { min: 0, max: 0, why: 'before the first beat led' };
          if (due <= last) return { min: 1, max: 1, why: 'the first beat leads' };
          if (due < onTime) return caught.includes(due) ? { min: 1, max: 1, why: `missed, caught up ('${mode}')` } : { min: 0, max: 0, why: `missed, skipped ('${mode}')` };
          if (due <= end) return { min: 1, max: 1, why: 'the restarted beat leads' };
          return { min: 0, max: 0, why: 'after the restarted beat stopped' };
        };
        assertSeconds(c.out, schedule, from - 3 * SECOND, end + 3 * SECOND, rule, from);
        for (const id of fireIds(schedule, from, end)) known.add(id);

        const skipped = secondBeat.log.find((e) => e.schedule === schedule && typeof e.skipped === 'number');
        const firing = secondBeat.log.find((e) => e.schedule === schedule && typeof e.caughtUp === 'number');
        if (mode === 'all') {
          assert.equal(skipped, undefined, `${schedule}: nothing skipped`);
          assert.equal(firing?.caughtUp, gap.length, `${schedule}: logged that it fires the ${gap.length} missed due times`);
        } else {
          assert.ok(skipped, `${schedule}: the restarted beat logged what it skipped:\n${secondBeat.run.lines.join('\n')}`);
          assert.equal(skipped.skipped, mode === 'last' ? gap.length - 1 : gap.length, `${schedule}: the number skipped`);
          assert.match(skipped.msg, new RegExp(`^beat: ${schedule}: ${skipped.skipped} due time\\(s\\) passed while no beat led; skipped \\(catchUp: '${mode}'\\)$`));
          assert.equal(firing?.caughtUp, mode === 'last' ? 1 : undefined, `${schedule}: caught up ${mode === 'last' ? 'one' : 'none'}`);
        }
      }
      assertOnceAndKnown(c.out, known);
    } finally {
      ready();
      await killAll(procs);
      db.cleanup();
    }
  });

  it('a schedule firing chain(add.s(1, 2), mul.s(10)) every 2 s (sqlite): each fire runs both steps once, and its final result, 30, is stored under its derived id', async () => {
    await secondWave();
    const db = tempDb();
    const schedule = `chain-${run}`;
    const c: CaseEnv = { broker: db.url, backend: db.url, queue: `beat-chain-${run}`, group: `chain-${run}`, out: tmp.file('chain.log'), schedules: [{ name: schedule, every: 2, kind: 'chain', expires: EXPIRES_SEC }] };
    const procs: Proc[] = [];
    const app = new Fennel({ broker: c.broker, backend: c.backend });
    try {
      const worker = startWorker(c, `w-chain-${run}@beat`);
      const beat = startBeat(c, `beat-chain-${run}`);
      procs.push(worker, beat);
      await Promise.all([worker.run.waitForLine(/worker ready/, READY_MS), beat.run.waitForLine(/beat ready/, READY_MS)]);
      await waitFor(() => fileLines(c.out).filter((l) => l.endsWith(' mul')).length >= 3, 'three chains to finish', WAIT_MS);
      await stopCleanly(beat);
      const fires = sentBy(beat, schedule);
      assert.ok(fires.length >= 3, `${fires.length} fires`);
      for (const fire of fires) {
        // The chain's tasks have ids derived from the schedule, the due time and their place in the chain.
        assert.equal(fire.id, taskIdOf(schedule, fire.due, 0), 'the fire is logged under its first task');
        assert.equal(await app.asyncResult<number>(taskIdOf(schedule, fire.due, 1)).get({ timeoutMs: WAIT_MS }), 30, `the chain fired at ${iso(fire.due)} stored 30`);
        assert.equal(await app.asyncResult<number>(taskIdOf(schedule, fire.due, 0)).get({ timeoutMs: WAIT_MS }), 3, 'and its first step 3');
      }
      const fenceId = await fence(c);
      await stopCleanly(worker);

      const from = fires[0]!.due;
      const end = fires.at(-1)!.due;
      assert.equal(from % 2000, 0, 'every: 2 is due on even seconds');
      for (const [part, step] of [[0, 'add'], [1, 'mul']] as const) {
        assertSeconds(c.out, schedule, from - 4 * SECOND, end + 4 * SECOND, (due) => (due >= from && due <= end ? { min: 1, max: 1, why: `fired: ${step} ran once` } : { min: 0, max: 0, why: 'not fired' }), from, part, 2 * SECOND);
      }
      for (const line of fileLines(c.out)) {
        const [id, marker] = line.split(' ');
        if (id === fenceId) continue;
        assert.equal(marker, fires.some((f) => taskIdOf(schedule, f.due, 0) === id) ? 'add' : 'mul', `${line}: its step`);
      }
      assertOnceAndKnown(c.out, new Set([...fireIds(schedule, from, end, 2, 2 * SECOND), fenceId]));
    } finally {
      await app.close();
      await killAll(procs);
      db.cleanup();
    }
  });

  it('`fennel worker --beat` fires and runs the schedule; `fennel schedules` shows it leading and its last fire, and no leader once it stopped', { skip: redisSkip }, async (t) => {
    await secondWave();
    const schedule = `embedded-${run}`;
    const c: CaseEnv = { broker: REDIS_URL, backend: REDIS_URL, queue: `beat-embedded-${run}`, group: `embedded-${run}`, out: tmp.file('embedded.log'), schedules: [{ name: schedule, every: 1, expires: EXPIRES_SEC }] };
    const node = `w-embedded-${run}@beat`;
    const beatName = `${node}/beat`;
    const procs: Proc[] = [];
    const app = new Fennel({ broker: c.broker, backend: c.backend });
    try {
      const worker = startWorker(c, node, ['--beat']);
      // The worker logs its beat's lines as its own; ledAt() looks for the beat's name.
      const asBeat: Proc = { ...worker, name: beatName };
      procs.push(worker);
      await worker.run.waitForLine(/worker ready/, READY_MS);
      await waitFor(() => ledAt(asBeat) !== undefined, 'the embedded beat to lead', READY_MS);
      await waitFor(() => fileLines(c.out).length >= 3, 'three fires to run', WAIT_MS);

      const [json, text] = await Promise.all([schedules(c, true), schedules(c, false)]);
      assert.equal(json.leader?.beat, beatName, `the worker's beat leads: ${JSON.stringify(json)}`);
      assert.ok(Date.parse(json.leader.leaseUntil) > Date.now() - 10 * SECOND, 'its lease runs');
      assert.equal(json.schedules.length, 1);
      const listed = json.schedules[0]!;
      assert.deepEqual({ name: listed.name, when: listed.when, task: listed.task, catchUp: listed.catchUp, expiresSec: listed.expiresSec, lastBeat: listed.lastBeat }, { name: schedule, when: 'every 1s', task: 'beat.record', catchUp: 'none', expiresSec: EXPIRES_SEC, lastBeat: beatName });
      assert.ok(listed.lastDue && listed.next, `a last and a next fire: ${JSON.stringify(listed)}`);
      assert.equal(listed.lastTaskId, taskIdOf(schedule, Date.parse(listed.lastDue)), 'the last fire under its derived id');
      assert.ok(Date.parse(listed.next) > Date.parse(listed.lastDue));
      assert.match(text[0]!, new RegExp(`^leader: ${beatName.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(lease until \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)$`));
      const row = text.find((l) => l.startsWith(`${schedule} `));
      assert.ok(row, `a row for ${schedule}:\n${text.join('\n')}`);
      assert.match(row, /^\S+\s+every 1s\s+beat\.record\s+none\s+\d{4}-\d\d-\d\dT[\d:.]+Z\s+\d{4}-\d\d-\d\dT[\d:.]+Z$/);

      await stopCleanly(worker);
      const fires = sentBy(asBeat, schedule);
      const last = fires.at(-1)!;
      const [afterJson, afterText] = await Promise.all([schedules(c, true), schedules(c, false)]);
      assert.equal(afterJson.leader, null, 'the stopped worker gave its beat lease up');
      assert.equal(afterText[0], 'leader: none (no beat is running)');
      assert.deepEqual(
        { lastDue: afterJson.schedules[0]!.lastDue, lastTaskId: afterJson.schedules[0]!.lastTaskId, lastBeat: afterJson.schedules[0]!.lastBeat },
        { lastDue: iso(last.due), lastTaskId: taskIdOf(schedule, last.due), lastBeat: beatName },
        'the last fire is the last one the worker logged',
      );
      assert.ok(afterText.some((l) => l.startsWith(`${schedule} `) && l.includes(iso(last.due))), `the text lists the last fire:\n${afterText.join('\n')}`);

      // Every fire ran once, but those still waiting in the queue when the worker stopped (the latest ones).
      const from = fires[0]!.due;
      const waiting = await app.transport.depth(c.queue);
      t.diagnostic(`fired ${iso(fires[0]!.due)} … ${iso(last.due)}; ${waiting} left in the queue when the worker stopped`);
      const ran = tally(c.out);
      assertSeconds(c.out, schedule, from - 3 * SECOND, last.due + 3 * SECOND, (due) => {
        if (due < from || due > last.due) return { min: 0, max: 0, why: 'not fired' };
        return due > last.due - waiting * SECOND ? { min: 0, max: 0, why: `one of the ${waiting} left in the queue` } : { min: 1, max: 1, why: 'fired' };
      }, from);
      assert.equal(ran.size, fires.length - waiting, `${fires.length} fired, ${waiting} waiting in the queue, the rest ran`);
      assertOnceAndKnown(c.out, new Set(fireIds(schedule, from, last.due)));
    } finally {
      await app.close();
      await killAll(procs);
    }
  });

  it("two apps in different beat groups on one broker, each with a schedule of the same name (redis): each app's fires run, once each", { skip: redisSkip }, async () => {
    await secondWave();
    const schedule = `shared-${run}`;
    const out = tmp.file('groups.log');
    const cases: CaseEnv[] = ['A', 'B'].map((app) => ({
      broker: REDIS_URL,
      backend: REDIS_URL,
      queue: `beat-groups-${app}-${run}`,
      group: `groups-${app}-${run}`,
      out,
      schedules: [{ name: schedule, every: 1, expires: EXPIRES_SEC, args: [app] }],
    }));
    const procs: Proc[] = [];
    try {
      const worker = startWorker(cases[0]!, `w-groups-${run}@beat`, [], cases.map((c) => c.queue).join(','));
      const beats = cases.map((c, i) => startBeat(c, `beat-groups-${'AB'[i]}-${run}`));
      procs.push(worker, ...beats);
      await Promise.all([worker.run.waitForLine(/worker ready/, READY_MS), ...beats.map((b) => b.run.waitForLine(/beat ready/, READY_MS))]);
      // Each leads its own group.
      await waitFor(() => beats.every((b) => ledAt(b) !== undefined), 'both beats to lead, each in its group', READY_MS);
      await waitFor(() => beats.every((b) => sentBy(b, schedule).length >= 4), 'four fires of each', WAIT_MS);
      await Promise.all(beats.map(stopCleanly));
      const fences = await Promise.all(cases.map((c) => fence(c)));
      await stopCleanly(worker);

      const lines = fileLines(out);
      const sent = beats.map((b) => sentBy(b, schedule));
      const runs = sent.map((fires, i) => fires.map((f) => `${iso(f.due)}: ${lines.filter((l) => l === `${f.id} ${'AB'[i]}`).length}`));
      assert.deepEqual(runs, sent.map((fires) => fires.map((f) => `${iso(f.due)}: 1`)), `each app's logged fires ran once each, with its args:\n${lines.join('\n')}`);
      assert.deepEqual(sent[0]!.map((f) => f.id).filter((id) => sent[1]!.some((f) => f.id === id)), [], 'no task id is shared by the fires of the two groups');
      assert.equal(lines.length, sent[0]!.length + sent[1]!.length + fences.length, 'nothing else ran');
    } finally {
      await killAll(procs);
    }
  });

  it('a Python Celery worker runs the fires of a Fennel beat (redis): a task by name only Python registers, each fire once, SUCCESS in the Redis backend', { skip: celerySkip }, async () => {
    await secondWave();
    const schedule = `py-${run}`;
    const queue = `beat-interop-${run}`;
    const c: CaseEnv = {
      broker: REDIS_URL,
      backend: REDIS_URL,
      queue,
      group: `interop-${run}`,
      out: tmp.file('interop.log'),
      // The schedule's queue: the fires go there, whatever the default queue.
      schedules: [{ name: schedule, every: 1, kind: 'task', task: 'interop.beat_ping', args: ['x'], queue, expires: EXPIRES_SEC }],
    };
    const procs: Proc[] = [];
    let celery: PythonProcess | undefined;
    const redis = testRedisClient(DB);
    try {
      celery = startPython(
        ['-m', 'celery', '-A', 'beat_celery', 'worker', '-Q', queue, '-c', '1', '-P', 'solo', '--without-heartbeat', '--without-gossip', '--without-mingle', '-l', 'info', '-n', `py-beat-${run}@interop`],
        { cwd: FIXTURES, env: { ...process.env, PYTHONPATH: FIXTURES, INTEROP_BROKER_URL: REDIS_URL, INTEROP_RESULT_BACKEND: REDIS_URL, BEAT_OUT: c.out } },
      );
      const beat = startBeat({ ...c, queue: `beat-interop-default-${run}` }, `beat-interop-${run}`);
      procs.push(beat);
      await Promise.all([celery.waitForLine(/ready\./, READY_MS), beat.run.waitForLine(/beat ready/, READY_MS)]);
      await waitFor(() => ledAt(beat) !== undefined, 'the beat to lead', READY_MS);
      await waitFor(() => fileLines(c.out).length >= 3, 'the Celery worker to run three fires', WAIT_MS);
      await stopCleanly(beat);
      // The fence: Celery's solo pool runs its queue in order, one task at a time.
      const fenceId = await fence(c, 'interop.beat_ping');
      await stopPython(celery);

      const fires = sentBy(beat, schedule);
      assert.ok(fires.length >= 3, `${fires.length} fires`);
      const from = fires[0]!.due;
      const end = fires.at(-1)!.due;
      assertSeconds(c.out, schedule, from - 3 * SECOND, end + 3 * SECOND, (due) => (due >= from && due <= end ? { min: 1, max: 1, why: 'fired' } : { min: 0, max: 0, why: 'not fired' }), from);
      assertOnceAndKnown(c.out, new Set([...fireIds(schedule, from, end), fenceId]));
      assert.ok(fileLines(c.out).every((l) => l.endsWith(' x') || l.startsWith(fenceId)), 'the fires carried their args');
      // Celery's Redis backend stored each outcome under the fire's derived id.
      for (const fire of fires) {
        const raw = await redis.get(`celery-task-meta-${fire.id}`);
        assert.ok(raw, `a result for the fire due ${iso(fire.due)}`);
        const meta = JSON.parse(raw) as Record<string, unknown>;
        assert.deepEqual({ status: meta['status'], result: meta['result'], task_id: meta['task_id'] }, { status: 'SUCCESS', result: 'pong x', task_id: taskIdOf(schedule, fire.due) });
      }
    } finally {
      redis.disconnect();
      await stopPython(celery);
      await killAll(procs);
    }
  });
});
