// Beat in process, on the memory:// engines and real timers: one beat fires each due time once, in order, with
// ids derived from the due time; two beats share one lease and never fire a due time twice; a stopped leader
// hands over; the fires are ordinary task messages a worker runs (a chain included); a beat that was down
// catches up as its schedule says; the `deduplicate: { ttlSec }` call option it sends with.
// Waits poll for outcomes with generous deadlines; nothing here measures how long anything took.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import pino from 'pino';
import { Beat, beatKeys, type BeatOptions, type Fire } from '../../../src/beat/beat.ts';
import { fireId, type CatchUp } from '../../../src/beat/schedule.ts';
import { beatStatus } from '../../../src/beat/status.ts';
import { parseTaskMessage } from '../../../src/protocol/message.ts';
import { DEDUPE_HEADER, type Delivery } from '../../../src/transports/transport.ts';
import { chain, ConfigError, Fennel, Worker } from '../../../src/index.ts';
import { sleep, waitFor } from '../../conformance/helpers/wait.ts';

const silent = pino({ level: 'silent' });
/** Pause before a check that nothing more happened: many due times of the 100 ms schedules below. */
const GRACE_MS = 600;

// What a test opened, closed in reverse order after it, however it ended.
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

/** An app on memory:// engines of its own (memory engines are shared by URL within a process). */
function newApp(url = `memory://beat-${randomUUID()}`, options: { beatGroup?: string } = {}): Fennel {
  const app = new Fennel({ broker: url, ...options });
  cleanups.push(() => app.close());
  return app;
}

function newBeat(app: Fennel, options: BeatOptions): Beat {
  const beat = new Beat(app, { leaseMs: 300, logger: silent, ...options });
  cleanups.push(() => beat.stop());
  return beat;
}

async function startWorker(app: Fennel): Promise<Worker> {
  const worker = new Worker(app, { pool: 'async', concurrency: 4, logger: silent });
  await worker.start();
  cleanups.push(() => worker.stop(1));
  return worker;
}

/** Consumes the app's default queue, acking each message, until the test ends. */
async function collect(app: Fennel, queue = 'celery'): Promise<Delivery[]> {
  const deliveries: Delivery[] = [];
  const subscription = await app.transport.consume({ queues: [queue], prefetch: 1000 }, (delivery) => {
    deliveries.push(delivery);
    void delivery.ack();
  });
  cleanups.push(() => subscription.cancel());
  return deliveries;
}

/** An app firing 'tick' every 100 ms (catchUp all), two beats on it (beat-a started first) and its broker's deliveries. */
async function twoBeats(): Promise<{ app: Fennel; fires: Array<Fire & { by: string }>; a: Beat; b: Beat; deliveries: Delivery[] }> {
  const app = newApp();
  app.task('b.tick', () => 'tick');
  app.schedule('tick', { every: 0.1 }, 'b.tick', [], { catchUp: 'all' });
  const fires: Array<Fire & { by: string }> = [];
  const a = newBeat(app, { name: 'beat-a', onFire: (f) => fires.push({ ...f, by: 'beat-a' }) });
  const b = newBeat(app, { name: 'beat-b', onFire: (f) => fires.push({ ...f, by: 'beat-b' }) });
  const deliveries = await collect(app);
  await a.start();
  await b.start();
  return { app, fires, a, b, deliveries };
}

function refused(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof ConfigError && pattern.test(e.message), `a ConfigError matching ${String(pattern)}`);
}

/** Asserts that `dues` are one schedule's due times of period `periodMs`, each once, in order, none left out. */
function assertContiguous(dues: readonly number[], periodMs: number, what: string): void {
  const gaps = dues.slice(1).map((due, i) => due - dues[i]!);
  assert.ok(
    gaps.every((gap) => gap === periodMs),
    `${what}: consecutive due times ${periodMs} ms apart; gaps: ${gaps.join(',')}`,
  );
}

function assertEachOnce(values: readonly unknown[], what: string): void {
  const seen = new Set<unknown>();
  const twice = values.filter((v) => (seen.has(v) ? true : (seen.add(v), false)));
  assert.deepEqual(twice, [], `${what}: none twice`);
}

describe('Beat', () => {
  it('alone, it leads and fires each due time once, in order, never early, with the task id derived from the due time', async () => {
    const app = newApp();
    app.task('b.tick', () => 'tick');
    app.schedule('tick', { every: 0.1 }, 'b.tick', [], { catchUp: 'all' });
    const fires: Fire[] = [];
    const beat = newBeat(app, { name: 'beat-a', onFire: (f) => fires.push(f) });
    await beat.start();
    assert.equal(beat.isLeader, true, 'nobody else holds the lease: it leads after its first attempt');
    assert.equal((await app.backend.readLease!(beatKeys(app).lease))?.holder, 'beat-a');
    await waitFor(() => fires.length >= 20, { timeoutMs: 30_000, what: `20 fires (have ${fires.length})` });
    await beat.stop();
    assert.equal(beat.isLeader, false);
    assert.equal(await app.backend.readLease!(beatKeys(app).lease), undefined, 'stop gave the lease up');
    const stoppedAt = fires.length;
    await sleep(GRACE_MS);
    assert.equal(fires.length, stoppedAt, 'a stopped beat fires nothing more');

    const dues = fires.map((f) => f.dueMs);
    assert.ok(dues.every((due) => due % 100 === 0), 'every due time is on the 100 ms grid');
    assertEachOnce(dues, 'due times');
    assertContiguous(dues, 100, 'due times');
    assert.equal(fires[0]!.caughtUp, false, 'a first run has missed nothing');
    for (const fire of fires) {
      assert.equal(fire.schedule, 'tick');
      assert.equal(fire.taskId, fireId('tick', fire.dueMs));
      assert.ok(fire.sentAtMs >= fire.dueMs, `sent at or after its due time (due ${fire.dueMs}, sent ${fire.sentAtMs})`);
    }
    // What it recorded: the last due time it fired.
    const state = JSON.parse((await app.backend.readRecords!(beatKeys(app).state)).get('tick')!) as { lastDueMs: number; lastTaskId: string; beat: string };
    assert.deepEqual({ lastDueMs: state.lastDueMs, lastTaskId: state.lastTaskId, beat: state.beat }, { lastDueMs: dues.at(-1), lastTaskId: fires.at(-1)!.taskId, beat: 'beat-a' });
  });

  it('its fires are task messages in the broker, each once, carrying its id, arguments and expires (the schedule’s, or by default its period)', async () => {
    const app = newApp();
    const add = app.task('b.add', (a: number, b: number) => a + b);
    app.schedule('sum', { every: 0.1 }, add, [2, 3], { expires: 30 });
    app.schedule('by-name', { every: 0.2 }, 'proj.tasks.report', ['daily']);
    const deliveries = await collect(app);
    const fires: Fire[] = [];
    const beat = newBeat(app, { name: 'beat-a', onFire: (f) => fires.push(f) });
    await beat.start();
    await waitFor(() => fires.filter((f) => f.schedule === 'by-name').length >= 5, { timeoutMs: 30_000, what: '5 fires of the 200 ms schedule' });
    await beat.stop();
    await waitFor(() => deliveries.length >= fires.length, { timeoutMs: 10_000, what: `every fire delivered (${deliveries.length} of ${fires.length})` });
    await sleep(GRACE_MS);
    assert.equal(deliveries.length, fires.length, 'one message per fire, no more');

    const byId = new Map(fires.map((f) => [f.taskId, f]));
    const requests = deliveries.map((d) => ({ headers: d.message.headers, request: parseTaskMessage(d.message) }));
    assertEachOnce(requests.map((r) => r.request.id), 'delivered task ids');
    for (const { headers, request } of requests) {
      const fire = byId.get(request.id);
      assert.ok(fire, `delivered ${request.id} is a fire`);
      assert.equal(DEDUPE_HEADER in headers, false, 'sent with a ttl, so no fennel_dedupe header');
      assert.ok(request.expires instanceof Date, 'it carries expires');
      const expiresMs = request.expires.getTime();
      const expiresSec = fire.schedule === 'sum' ? 30 : 0.2;
      assert.ok(
        expiresMs >= fire.dueMs + expiresSec * 1000 && expiresMs <= fire.sentAtMs + expiresSec * 1000,
        `${fire.schedule}: expires ${request.expires.toISOString()} is ${expiresSec} s after it was sent (due ${new Date(fire.dueMs).toISOString()}, sent ${new Date(fire.sentAtMs).toISOString()})`,
      );
      if (fire.schedule === 'sum') assert.deepEqual([request.name, request.args], ['b.add', [2, 3]]);
      else assert.deepEqual([request.name, request.args], ['proj.tasks.report', ['daily']]);
    }
  });

  it('a worker runs what it fires: a task, a task by name, and a chain, whose result arrives', async () => {
    const app = newApp();
    const add = app.task('b.add', (a: number, b: number) => a + b);
    const mul = app.task('b.mul', (a: number, b: number) => a * b);
    app.schedule('sum', { every: 0.5 }, add, [2, 3], { expires: 60 });
    app.schedule('product', { every: 0.5 }, 'b.mul', [6, 7], { expires: 60 });
    app.schedule('pipeline', { every: 1 }, chain(add.s(1, 2), mul.s(10)), [], { expires: 60 });
    await startWorker(app);
    const fires: Fire[] = [];
    const beat = newBeat(app, { name: 'beat-a', onFire: (f) => fires.push(f) });
    await beat.start();
    const first = async (schedule: string): Promise<Fire> => {
      await waitFor(() => fires.some((f) => f.schedule === schedule), { timeoutMs: 20_000, what: `a fire of ${schedule}` });
      return fires.find((f) => f.schedule === schedule)!;
    };
    const sum = await first('sum');
    assert.equal(await app.asyncResult<number>(sum.taskId).get({ timeoutMs: 20_000 }), 5);
    const product = await first('product');
    assert.equal(await app.asyncResult<number>(product.taskId).get({ timeoutMs: 20_000 }), 42);
    const pipeline = await first('pipeline');
    // The chain's ids are derived from the due time too: its first step is part 0, its second part 1.
    assert.equal(pipeline.taskId, fireId('pipeline', pipeline.dueMs, 0));
    assert.equal(await app.asyncResult<number>(fireId('pipeline', pipeline.dueMs, 0)).get({ timeoutMs: 20_000 }), 3);
    assert.equal(await app.asyncResult<number>(fireId('pipeline', pipeline.dueMs, 1)).get({ timeoutMs: 20_000 }), 30, 'the chain’s result');
  });

  it('two beats on one app: exactly one leads, and no due time is fired twice', async () => {
    const { app, fires, a, b, deliveries } = await twoBeats();
    let mostLeaders = 0;
    const sampler = setInterval(() => (mostLeaders = Math.max(mostLeaders, [a, b].filter((x) => x.isLeader).length)), 5);
    cleanups.push(async () => clearInterval(sampler));
    assert.deepEqual([a.isLeader, b.isLeader], [true, false], 'the first to ask leads; the other follows');
    await waitFor(() => fires.length >= 20, { timeoutMs: 30_000, what: `20 fires (have ${fires.length})` });
    assert.equal((await app.backend.readLease!(beatKeys(app).lease))?.holder, 'beat-a');
    await a.stop();
    await b.stop();
    clearInterval(sampler);
    assert.equal(mostLeaders, 1, 'never two leaders at once');
    assert.deepEqual([...new Set(fires.map((f) => f.by))], ['beat-a'], 'only the leader fired');
    assertEachOnce(fires.map((f) => f.dueMs), 'due times');
    assertContiguous(fires.map((f) => f.dueMs), 100, 'due times');
    await waitFor(() => deliveries.length >= fires.length, { timeoutMs: 10_000, what: 'every fire delivered' });
    await sleep(GRACE_MS);
    assert.deepEqual(deliveries.map((d) => d.message.headers['id']).sort(), fires.map((f) => f.taskId).sort(), 'the broker got each fire once');
  });

  it('stop() of the leader gives the lease up; the follower takes over and carries on where it stopped, without a duplicate or a gap', async () => {
    const { app, fires, a, b, deliveries } = await twoBeats();
    await waitFor(() => fires.length >= 10, { timeoutMs: 30_000, what: 'fires from the first leader' });
    await a.stop();
    assert.equal(a.isLeader, false);
    assert.notEqual((await app.backend.readLease!(beatKeys(app).lease))?.holder, 'beat-a', 'the stopped leader no longer holds the lease');
    const byA = fires.length;
    // The follower finds the lease free when it next asks: at the latest when the old lease would have lapsed.
    await waitFor(() => b.isLeader, { timeoutMs: 10_000, what: 'the follower to lead' });
    assert.equal((await app.backend.readLease!(beatKeys(app).lease))?.holder, 'beat-b');
    await waitFor(() => fires.length >= byA + 10, { timeoutMs: 30_000, what: 'fires from the new leader' });
    await b.stop();

    assert.equal(fires.slice(0, byA).every((f) => f.by === 'beat-a'), true);
    assert.equal(fires.slice(byA).every((f) => f.by === 'beat-b'), true, 'after the stop, only the new leader fires');
    const dues = fires.map((f) => f.dueMs);
    assertEachOnce(dues, 'due times across the handover');
    assertContiguous(dues, 100, 'due times across the handover');
    await waitFor(() => deliveries.length >= fires.length, { timeoutMs: 10_000, what: 'every fire delivered' });
    await sleep(GRACE_MS);
    assert.equal(deliveries.length, fires.length, 'the broker got each fire once');
  });

  it('a leader cut off from the store stops firing when its own lease time is up; the follower takes over after that, and no due time fires twice', async () => {
    const app = newApp();
    app.task('b.tick', () => 'tick');
    app.schedule('tick', { every: 0.1 }, 'b.tick', [], { catchUp: 'all' });
    const fires: Array<Fire & { by: string }> = [];
    const a = newBeat(app, { name: 'beat-a', leaseMs: 1000, onFire: (f) => fires.push({ ...f, by: 'beat-a' }) });
    // The partition (a unit's stand-in for a cut connection): from `cut` on, beat-a's lease calls fail. Its sends
    // still reach the broker, the harder case: only its own lease time can stop it.
    let cut = false;
    const store = (a as unknown as { backend: { acquireLease: (...args: [string, string, number]) => Promise<unknown> } }).backend;
    const acquire = store.acquireLease;
    store.acquireLease = (...args) => (cut ? Promise.reject(new Error('partitioned')) : acquire(...args));
    const b = newBeat(app, { name: 'beat-b', leaseMs: 1000, onFire: (f) => fires.push({ ...f, by: 'beat-b' }) });
    await a.start();
    await b.start();
    await waitFor(() => fires.length >= 5, { timeoutMs: 30_000, what: 'fires from the first leader' });
    cut = true;
    await waitFor(() => !a.isLeader, { timeoutMs: 10_000, what: 'the cut-off leader to stop leading' });
    await waitFor(() => b.isLeader, { timeoutMs: 10_000, what: 'the follower to lead' });
    await waitFor(() => fires.filter((f) => f.by === 'beat-b').length >= 5, { timeoutMs: 30_000, what: 'fires from the new leader' });
    await a.stop();
    await b.stop();
    const lastOfA = Math.max(...fires.filter((f) => f.by === 'beat-a').map((f) => f.dueMs));
    const firstOfB = Math.min(...fires.filter((f) => f.by === 'beat-b').map((f) => f.dueMs));
    assert.ok(lastOfA < firstOfB, `beat-a's fires (to ${lastOfA}) all come before beat-b's (from ${firstOfB})`);
    const dues = fires.map((f) => f.dueMs);
    assertEachOnce(dues, 'due times across the partition');
    assertContiguous(dues, 100, 'due times across the partition (catchUp all fires the gap)');
  });

  it(
    'a handover by stop() loses no due time even with catchUp none: the follower finds the released lease while the handover’s due times are on time',
    async () => {
      const app = newApp();
      app.task('b.tick', () => 'tick');
      app.schedule('tick', { every: 0.1 }, 'b.tick'); // catchUp: 'none'
      const fires: Array<Fire & { by: string }> = [];
      const a = newBeat(app, { name: 'beat-a', leaseMs: 3000, onFire: (f) => fires.push({ ...f, by: 'beat-a' }) });
      const b = newBeat(app, { name: 'beat-b', leaseMs: 3000, onFire: (f) => fires.push({ ...f, by: 'beat-b' }) });
      await a.start();
      await b.start();
      // Setup, not a check: the follower has looked at the lease a second time (when the one it first saw would
      // have lapsed) and found it renewed; the leader stops just after that.
      await sleep(3300);
      await a.stop();
      await waitFor(() => b.isLeader, { timeoutMs: 15_000, what: 'the follower to lead' });
      await waitFor(() => fires.filter((f) => f.by === 'beat-b').length >= 5, { timeoutMs: 15_000, what: 'fires from the new leader' });
      await b.stop();
      const dues = fires.map((f) => f.dueMs);
      assertEachOnce(dues, 'due times across the handover');
      assertContiguous(dues, 100, 'due times across the handover');
    },
  );

  it('a beat stopped while its first attempt at the lease is under way does not keep the lease', async () => {
    const app = newApp();
    app.schedule('tick', { every: 1 }, 'b.tick');
    const a = newBeat(app, { name: 'beat-a', leaseMs: 60_000 });
    const started = a.start();
    await a.stop();
    await started;
    assert.equal(await app.backend.readLease!(beatKeys(app).lease), undefined, 'nobody holds the lease after the beat stopped');
    const b = newBeat(app, { name: 'beat-b', leaseMs: 60_000 });
    await b.start();
    assert.equal(b.isLeader, true, 'another beat leads at once');
  });

  it('a beat that was down catches up as catchUp says: none skips the missed due times, last fires the latest, all fires each', async () => {
    for (const catchUp of ['none', 'last', 'all'] as const satisfies readonly CatchUp[]) {
      const app = newApp();
      app.task('b.tick', () => 'tick');
      app.schedule('tick', { every: 1 }, 'b.tick', [], { catchUp });
      // Recorded by an earlier beat: it last fired the due time 10 s ago, and has been down since.
      const lastDue = (Math.floor(Date.now() / 1000) - 10) * 1000;
      await app.backend.putRecord!(beatKeys(app).state, 'tick', JSON.stringify({ lastDueMs: lastDue, lastSentAtMs: lastDue, lastTaskId: fireId('tick', lastDue), beat: 'old' }));
      const fires: Fire[] = [];
      const beat = newBeat(app, { name: `beat-${catchUp}`, onFire: (f) => fires.push(f) });
      await beat.start();
      await waitFor(() => fires.some((f) => !f.caughtUp), { timeoutMs: 20_000, what: `${catchUp}: a fire on time` });
      await beat.stop();
      const dues = fires.map((f) => f.dueMs);
      const caught = fires.filter((f) => f.caughtUp);
      assert.ok(dues.every((due) => due > lastDue), `${catchUp}: nothing at or before the last recorded fire`);
      assertEachOnce(dues, catchUp);
      if (catchUp === 'none') {
        assert.deepEqual(caught, [], 'none: nothing caught up');
        assert.ok(dues[0]! >= lastDue + 10_000, `none: the 9 or more missed due times were skipped (first fired: ${dues[0]! - lastDue} ms after the last recorded)`);
      } else if (catchUp === 'last') {
        assert.equal(caught.length, 1, 'last: one missed due time fired');
        assert.equal(fires[0]!.caughtUp, true, 'last: first');
        assert.ok(dues[0]! >= lastDue + 9_000, `last: the latest missed one (${dues[0]! - lastDue} ms after the last recorded)`);
        assertContiguous(dues, 1000, 'last: then on with the schedule');
      } else {
        assert.ok(caught.length >= 9, `all: each missed due time fired (${caught.length})`);
        assert.deepEqual(fires.slice(0, caught.length), caught, 'all: the missed ones first');
        assert.equal(dues[0], lastDue + 1000, 'all: from the first missed one');
        assertContiguous(dues, 1000, 'all: every due time since the last recorded');
      }
    }
  });

  it('beatGroup: beats of apps with different groups on one broker each lead; beats of one group share the lead', async () => {
    const url = `memory://beat-${randomUUID()}`;
    const reports = newApp(url, { beatGroup: 'reports' });
    const cleanup = newApp(url, { beatGroup: 'cleanup' });
    const reportsAgain = newApp(url, { beatGroup: 'reports' });
    for (const app of [reports, cleanup, reportsAgain]) app.schedule('tick', { every: 60 }, 'b.tick');
    assert.equal(reports.backend, cleanup.backend, 'one store (memory engines are shared by URL)');
    assert.notEqual(beatKeys(reports).lease, beatKeys(cleanup).lease);
    const beats = [newBeat(reports, { name: 'reports-1' }), newBeat(cleanup, { name: 'cleanup-1' }), newBeat(reportsAgain, { name: 'reports-2' })];
    for (const beat of beats) await beat.start();
    assert.deepEqual(beats.map((b) => b.isLeader), [true, true, false]);
  });

  it('beatStatus reads who leads and each schedule’s last and next fire from the store', async () => {
    const app = newApp();
    app.schedule('tick', { every: 0.1 }, 'b.tick', [], { catchUp: 'last' });
    app.schedule('daily', { cron: '30 2 * * *', tz: 'Europe/Paris' }, 'b.report', ['daily']);
    const before = await beatStatus(app);
    assert.equal(before.leader, null);
    assert.deepEqual(before.schedules.map((s) => [s.name, s.when, s.task, s.catchUp, s.expiresSec, s.lastDue]), [
      ['tick', 'every 0.1s', 'b.tick', 'last', 0.1, null],
      ['daily', 'cron 30 2 * * * (Europe/Paris)', 'b.report', 'none', 86_400, null],
    ]);
    const fires: Fire[] = [];
    const beat = newBeat(app, { name: 'beat-a', onFire: (f) => fires.push(f) });
    await beat.start();
    await waitFor(() => fires.length >= 3, { timeoutMs: 20_000, what: 'three fires' });
    const leading = await beatStatus(app);
    assert.equal(leading.leader?.beat, 'beat-a');
    await beat.stop();
    const now = Date.now();
    const after = await beatStatus(app, now);
    assert.equal(after.leader, null, 'stopped: nobody leads');
    const tick = after.schedules.find((s) => s.name === 'tick')!;
    const last = fires.at(-1)!;
    assert.deepEqual(
      { lastDue: tick.lastDue, lastTaskId: tick.lastTaskId, lastBeat: tick.lastBeat, next: tick.next },
      { lastDue: new Date(last.dueMs).toISOString(), lastTaskId: last.taskId, lastBeat: 'beat-a', next: new Date((Math.floor(now / 100) + 1) * 100).toISOString() },
    );
    assert.equal(after.schedules.find((s) => s.name === 'daily')!.lastDue, null);
  });

  it('refuses a lease under 100 ms', () => {
    const app = newApp();
    refused(() => new Beat(app, { leaseMs: 50, logger: silent }), /beat: leaseMs must be at least 100/);
  });

  it('an app whose result backend is rpc:// cannot hold a lease: a ConfigError when the beat is made, without connecting to the broker', async () => {
    // A server standing in for RabbitMQ, counting the connections made to it.
    const sockets: Socket[] = [];
    const server = createServer((socket) => {
      sockets.push(socket);
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const { port } = server.address() as { port: number };
    const app = new Fennel({ broker: `amqp://guest:guest@127.0.0.1:${port}/`, backend: 'rpc://' });
    cleanups.push(() => app.close());
    app.schedule('tick', { every: 1 }, 'b.tick');
    refused(() => new Beat(app, { logger: silent }), /beat keeps its lease and state in the result backend, and rpc:\/\/ cannot hold them/);
    await sleep(GRACE_MS);
    assert.equal(sockets.length, 0, 'nothing connected to the broker');
  });
});

describe('deduplicate: { ttlSec } (call option)', () => {
  it('refuses a ttl that is not a positive number, or given without a taskId', () => {
    const app = newApp();
    const add = app.task('d.add', (a: number, b: number) => a + b);
    const taskId = randomUUID();
    for (const deduplicate of [{ ttlSec: 0 }, { ttlSec: -5 }, { ttlSec: 'x' }, { ttlSec: Number.NaN }, {}, { ttlSec: 5, extra: 1 }, { ttlMs: 5000 }, 'yes', null]) {
      refused(() => add.applyAsync([1, 2], { taskId, deduplicate } as never), /call of 'd\.add': option 'deduplicate' must be true, false or \{ ttlSec: a positive number \}/);
    }
    refused(() => add.applyAsync([1, 2], { deduplicate: { ttlSec: 5 } }), /call of 'd\.add': deduplicate needs a taskId/);
  });

  it('refuses an infinite ttl', () => {
    const app = newApp();
    const add = app.task('d.add', (a: number, b: number) => a + b);
    refused(() => add.applyAsync([1, 2], { taskId: randomUUID(), deduplicate: { ttlSec: Number.POSITIVE_INFINITY } }), /option 'deduplicate' must be true, false or \{ ttlSec: a positive number \}/);
  });

  it('accepts { ttlSec: 5 }: one message per task id within the ttl, even after it was consumed, and without the fennel_dedupe header', async () => {
    const app = newApp();
    const add = app.task('d.add', (a: number, b: number) => a + b);
    const taskId = randomUUID();
    const first = add.applyAsync([1, 2], { taskId, deduplicate: { ttlSec: 5 } });
    assert.equal(first.id, taskId);
    await first.sent;
    const second = add.applyAsync([1, 2], { taskId, deduplicate: { ttlSec: 5 } });
    assert.equal(second.id, taskId, 'the duplicate’s handle is the first call’s id');
    await second.sent;
    assert.equal(await app.transport.depth('celery'), 1, 'the duplicate was dropped');
    const deliveries = await collect(app);
    await waitFor(() => deliveries.length === 1, { what: 'the message' });
    assert.equal(DEDUPE_HEADER in deliveries[0]!.message.headers, false);
    await add.applyAsync([1, 2], { taskId, deduplicate: { ttlSec: 5 } }).sent;
    await sleep(GRACE_MS);
    assert.equal(deliveries.length, 1, 'consumed and acked, yet still taken for the ttl');
    // deduplicate: true, by contrast, marks its message and frees the id once it is acked.
    const other = randomUUID();
    await add.applyAsync([1, 2], { taskId: other, deduplicate: true }).sent;
    await waitFor(() => deliveries.length === 2, { what: 'the pending-mode message' });
    assert.equal(deliveries[1]!.message.headers[DEDUPE_HEADER], true);
  });
});
