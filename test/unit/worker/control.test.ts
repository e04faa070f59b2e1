// The worker's command table (src/worker/control.ts) on an in-memory mailbox and a stand-in worker: every command's
// reply in Celery's shape, the refusals with their reasons, and the requests a worker must drop without crashing
// (undecodable, malformed, stale, addressed to another node). The real worker runs these commands in
// test/integration/control.test.ts and against Celery's CLI in test/integration/control-interop.test.ts.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import pino from 'pino';
import { Fennel } from '../../../src/app/fennel.ts';
import { sendControl } from '../../../src/control/client.ts';
import { createChannelEngine } from '../../../src/channels/index.ts';
import { createMailboxEngine } from '../../../src/control/index.ts';
import type { MailboxEngine } from '../../../src/control/mailbox.ts';
import { controlRequest, requestHeaders } from '../../../src/control/protocol.ts';
import type { WireMessage } from '../../../src/protocol/message.ts';
import { celeryPidboxRedis } from '../../fixtures/celery.ts';
import { parseTaskMessage } from '../../../src/protocol/message.ts';
import type { Delivery } from '../../../src/transports/transport.ts';
import { CONTROL_COMMANDS, ControlPanel, type ControlledWorker } from '../../../src/worker/control.ts';

const NODE = 'unit@control';
const WAIT = { timeoutMs: 10_000, destination: [NODE] };

/** A stand-in worker: records what the commands change. */
function fakeWorker(app: Fennel) {
  const state = {
    size: 2,
    resized: [] as number[],
    rate: new Map<string, string | null>(),
    limits: new Map<string, { soft: number | null; hard: number | null }>(),
    queues: ['celery'],
    events: false,
    shutdowns: 0,
    revoked: new Map<string, number>(),
    terminated: [] as string[],
    held: [] as Array<{ delivery: Delivery; request?: ReturnType<typeof parseTaskMessage>; startedAt?: number }>,
    autoscale: undefined as { max: number; min: number } | undefined,
  };
  const worker: ControlledWorker = {
    name: NODE,
    app,
    poolKind: 'process',
    maxTasksPerChild: undefined,
    concurrency: () => state.size,
    poolTarget: () => state.size,
    prefetchCount: () => state.size * 4,
    pids: () => [101, 102],
    pidOf: (id) => (id === 'running' ? 101 : undefined),
    held: () => state.held,
    totals: () => ({ 'unit.add': 3 }),
    deadLetters: () => 1,
    uptimeSec: () => 5,
    clock: () => 7,
    queues: () => state.queues.map((name) => ({ name, kind: 'queue' as const })),
    revoked: {
      has: (id) => state.revoked.has(id),
      ids: () => [...state.revoked.keys()],
      addLocal: (id, until) => void state.revoked.set(id, until),
    },
    terminate: (id) => (id === 'running' ? (state.terminated.push(id), true) : false),
    resizePool: async (size) => {
      state.size = size;
      state.resized.push(size);
    },
    get autoscale() {
      return state.autoscale && {
        range: () => state.autoscale!,
        update: async (max: number, min: number) => void (state.autoscale = { max, min }),
      };
    },
    setRateLimit: (task, rate) => void state.rate.set(task, rate),
    setTimeLimits: (task, limits) => void state.limits.set(task, limits),
    overrides: (task) => ({
      ...(state.rate.has(task) ? { rateLimit: state.rate.get(task) ?? null } : {}),
      ...(state.limits.has(task) ? { timeLimits: state.limits.get(task)! } : {}),
    }),
    addConsumer: async (queue) => (state.queues.includes(queue) ? false : (state.queues.push(queue), true)),
    cancelConsumer: async (queue) => (state.queues.includes(queue) ? ((state.queues = state.queues.filter((q) => q !== queue)), true) : false),
    taskEvents: () => state.events,
    setTaskEvents: (on) => void (state.events = on),
    shutdown: () => void state.shutdowns++,
  };
  return { worker, state };
}

/** A held delivery of `unit.add(1, 2)` with this id. */
function heldTask(id: string, startedAt?: number) {
  const message = taskMessage(id);
  const delivery = { message, queue: 'celery', redelivered: false, ack: async () => {}, reject: async () => {} } satisfies Delivery;
  return { delivery, request: parseTaskMessage(message), ...(startedAt === undefined ? {} : { startedAt }) };
}

function taskMessage(id: string): WireMessage {
  return {
    headers: { lang: 'js', task: 'unit.add', id, root_id: id, parent_id: null, group: null, retries: 0, eta: null, expires: null, timelimit: [null, null], argsrepr: '(1, 2)', kwargsrepr: '{}', origin: 'test' },
    properties: { correlation_id: id, reply_to: '', delivery_mode: 2, delivery_tag: id, body_encoding: 'utf-8', delivery_info: { exchange: '', routing_key: 'celery' }, priority: 0 },
    body: JSON.stringify([[1, 2], {}, { callbacks: null, errbacks: null, chain: null, chord: null }]),
    contentType: 'application/json',
    contentEncoding: 'utf-8',
  };
}

describe('the worker command table', () => {
  let mailbox: MailboxEngine;
  let mailboxUrl: string;
  let app: Fennel;
  let panel: ControlPanel;
  let fake: ReturnType<typeof fakeWorker>;
  const logged: Array<{ level: number; msg: string }> = [];

  beforeEach(async () => {
    mailboxUrl = `memory://control-${randomUUID()}`;
    mailbox = createMailboxEngine(mailboxUrl);
    app = new Fennel({ broker: 'memory://control-unit' });
    app.task('unit.add', (a: number, b: number) => a + b, { rateLimit: '10/s' });
    fake = fakeWorker(app);
    logged.length = 0;
    const log = pino({ level: 'debug' }, { write: (line: string) => void logged.push(JSON.parse(line) as { level: number; msg: string }) });
    panel = new ControlPanel(fake.worker, mailbox, log);
    await panel.start();
  });
  afterEach(async () => {
    await panel.stop();
    await app.close();
  });

  const ask = async (method: string, args: Record<string, unknown> = {}): Promise<unknown> => {
    const { replies, missing } = await sendControl(mailbox, { method, arguments: args, ...WAIT });
    assert.deepEqual(missing, [], `${method} answered`);
    assert.equal(replies.length, 1);
    assert.equal(replies[0]!.node, NODE);
    return replies[0]!.result;
  };

  it('answers the inspections in Celery’s shapes', async () => {
    fake.state.held.push(heldTask('running', 1_700_000_000_000), heldTask('waiting'), { delivery: heldTask('decoding').delivery });
    assert.deepEqual(await ask('ping'), { ok: 'pong' });
    const active = (await ask('active')) as Array<Record<string, unknown>>;
    assert.deepEqual(active.map((t) => [t['id'], t['name'], t['args'], t['time_start'], t['worker_pid'], t['hostname']]), [['running', 'unit.add', [1, 2], 1_700_000_000, 101, NODE]]);
    assert.deepEqual(active[0]!['delivery_info'], { exchange: '', routing_key: 'celery', priority: 0, redelivered: false });
    const reserved = (await ask('reserved')) as Array<Record<string, unknown>>;
    assert.deepEqual(reserved.map((t) => [t['id'], t['time_start'], t['worker_pid']]), [['waiting', null, null]]);
    assert.deepEqual(await ask('scheduled'), []);
    assert.deepEqual(await ask('registered', { taskinfoitems: [] }), ['unit.add [rate_limit=10/s]'], 'built-in fennel.* tasks are left out');
    assert.deepEqual(await ask('query_task', { ids: ['running', 'waiting', 'nope'] }), {
      running: ['active', active[0]],
      waiting: ['reserved', reserved[0]],
    });
    const stats = (await ask('stats')) as Record<string, Record<string, unknown>>;
    assert.equal(stats['pid'], process.pid);
    assert.deepEqual(stats['total'], { 'unit.add': 3 });
    assert.equal(stats['pool']!['max-concurrency'], 2);
    assert.deepEqual(stats['pool']!['processes'], [101, 102]);
    assert.equal(stats['prefetch_count'], 8);
    assert.equal(stats['broker']!['transport'], 'memory');
    assert.equal(typeof stats['rusage']!['utime'], 'number');
    assert.deepEqual({ held: stats['fennel']!['held'], dead: stats['fennel']!['dead_letters'] }, { held: 3, dead: 1 });
    const queues = (await ask('active_queues')) as Array<Record<string, unknown>>;
    assert.deepEqual(queues.map((q) => [q['name'], q['routing_key']]), [['celery', 'celery']]);
  });

  it("has the keys and value kinds of Celery 5's captured replies (active, reserved, query_task, stats, active_queues)", async () => {
    const celery = (name: string): unknown => {
      const command = celeryPidboxRedis.commands.find((c) => c.name === name) as unknown as { result: { stdout: Record<string, unknown> } };
      return command.result.stdout['cap1@vm'];
    };
    /** Each key with the kind of its value (null counts as any kind: Celery leaves some fields null). */
    const shape = (value: unknown): Record<string, string> => Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v]));
    const sameShape = (ours: unknown, theirs: unknown, what: string): void => {
      const [a, b] = [shape(ours), shape(theirs)];
      assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${what}: the same keys`);
      for (const key of Object.keys(b)) if (a[key] !== 'null' && b[key] !== 'null') assert.equal(a[key], b[key], `${what}.${key}: the same kind`);
    };
    fake.state.held.push(heldTask('running', 1_700_000_000_000), heldTask('waiting'));
    const [ourActive] = (await ask('active')) as unknown[];
    const [theirActive] = celery('inspect active') as unknown[];
    sameShape(ourActive, theirActive, 'active[0]');
    sameShape((ourActive as Record<string, unknown>)['delivery_info'], (theirActive as Record<string, unknown>)['delivery_info'], 'active[0].delivery_info');
    const [ourReserved] = (await ask('reserved')) as unknown[];
    sameShape(ourReserved, (celery('inspect reserved') as unknown[])[0], 'reserved[0]');
    const ourQuery = (await ask('query_task', { ids: ['running'] })) as Record<string, [string, unknown]>;
    const theirQuery = celery('inspect query_task') as Record<string, [string, unknown]>;
    assert.equal(ourQuery['running']![0], Object.values(theirQuery)[0]![0]);
    const ourStats = (await ask('stats')) as Record<string, Record<string, unknown>>;
    const theirStats = celery('inspect stats') as Record<string, Record<string, unknown>>;
    for (const key of Object.keys(theirStats)) assert.ok(key in ourStats, `stats has Celery's '${key}'`);
    for (const key of Object.keys(theirStats['pool']!).filter((k) => k !== 'writes')) assert.ok(key in ourStats['pool']!, `stats.pool has Celery's '${key}'`);
    for (const key of ['hostname', 'userid', 'virtual_host', 'port', 'transport', 'ssl']) assert.ok(key in ourStats['broker']!, `stats.broker has Celery's '${key}'`);
    sameShape(ourStats['rusage'], theirStats['rusage'], 'stats.rusage');
    assert.equal(typeof ourStats['clock'], typeof theirStats['clock'], 'clock is a string, as Celery sends it');
    const [ourQueue] = (await ask('active_queues')) as unknown[];
    const [theirQueue] = celery('inspect active_queues') as unknown[];
    sameShape(ourQueue, theirQueue, 'active_queues[0]');
    sameShape((ourQueue as Record<string, unknown>)['exchange'], (theirQueue as Record<string, unknown>)['exchange'], 'active_queues[0].exchange');
  });

  it('changes the pool, limits, consumers and events, and refuses what it cannot do with the reason', async () => {
    assert.deepEqual(await ask('pool_grow', { n: 2 }), { ok: 'pool will grow' });
    assert.equal(fake.state.size, 4);
    assert.deepEqual(await ask('pool_shrink', { n: 1 }), { ok: 'pool will shrink' });
    assert.equal(fake.state.size, 3);
    assert.match(((await ask('pool_shrink', { n: 3 })) as { error: string }).error, /keeps at least 1/);
    assert.match(((await ask('pool_grow', { n: 0 })) as { error: string }).error, /positive integer/);
    assert.equal(fake.state.size, 3, 'a refused resize changes nothing');
    assert.deepEqual(await ask('autoscale', { max: 3, min: 1 }), { error: "ValueError('Autoscale not enabled')" });
    fake.state.autoscale = { max: 4, min: 1 };
    assert.deepEqual(await ask('autoscale', { max: 6, min: 2 }), { ok: 'autoscale now max=6 min=2' });
    assert.deepEqual(fake.state.autoscale, { max: 6, min: 2 });
    assert.match(((await ask('autoscale', { max: 1, min: 2 })) as { error: string }).error, /greater than max/);
    assert.match(((await ask('pool_grow', { n: 1 })) as { error: string }).error, /not supported with autoscale/);

    assert.deepEqual(await ask('rate_limit', { task_name: 'unit.add', rate_limit: '5/m' }), { ok: 'new rate limit set successfully' });
    assert.equal(fake.state.rate.get('unit.add'), '5/m');
    assert.deepEqual(await ask('registered', { taskinfoitems: ['rate_limit'] }), ['unit.add [rate_limit=5/m]'], 'registered shows the limit set remotely');
    assert.deepEqual(await ask('rate_limit', { task_name: 'unit.add', rate_limit: '0' }), { ok: 'rate limit disabled successfully' });
    assert.equal(fake.state.rate.get('unit.add'), null);
    assert.deepEqual(await ask('rate_limit', { task_name: 'unit.add', rate_limit: 'fast' }), { error: 'Invalid rate limit string: fast' });
    assert.deepEqual(await ask('rate_limit', { task_name: 'nope', rate_limit: '1/s' }), { error: 'unknown task' });
    assert.deepEqual(await ask('time_limit', { task_name: 'unit.add', soft: 10.0, hard: 20 }), { ok: 'time limits set successfully' });
    assert.deepEqual(fake.state.limits.get('unit.add'), { soft: 10, hard: 20 });
    assert.deepEqual(await ask('registered', { taskinfoitems: ['rate_limit', 'time_limit', 'soft_time_limit'] }), ['unit.add [time_limit=20 soft_time_limit=10]'], 'a removed rate limit is not shown; the time limits set are');
    assert.match(((await ask('time_limit', { task_name: 'unit.add', soft: 30, hard: 20 })) as { error: string }).error, /longer than the hard one/);

    assert.deepEqual(await ask('add_consumer', { queue: 'extra', exchange: null }), { ok: 'add consumer extra' });
    assert.deepEqual(await ask('add_consumer', { queue: 'extra' }), { ok: 'already consuming from extra' });
    assert.deepEqual(await ask('cancel_consumer', { queue: 'extra' }), { ok: 'no longer consuming from extra' });
    assert.deepEqual(await ask('cancel_consumer', { queue: 'extra' }), { error: 'not consuming from extra' });

    assert.deepEqual(await ask('enable_events'), { ok: 'task events enabled' });
    assert.deepEqual(await ask('enable_events'), { ok: 'task events already enabled' });
    assert.deepEqual(await ask('disable_events'), { ok: 'task events disabled' });
  });

  it('revokes in memory, terminates what runs here when asked, and lists the revoked ids', async () => {
    assert.deepEqual(await ask('revoke', { task_id: ['a', 'b'] }), { ok: 'tasks a, b flagged as revoked' });
    assert.deepEqual(await ask('revoke', { task_id: 'running', terminate: true, signal: 'SIGTERM' }), { ok: 'terminate: running' });
    assert.deepEqual(await ask('revoke', { task_id: 'elsewhere', terminate: true }), { ok: 'terminate: tasks unknown' });
    assert.deepEqual(fake.state.terminated, ['running']);
    assert.deepEqual(((await ask('revoked')) as string[]).sort(), ['a', 'b', 'elsewhere', 'running']);
    assert.match(((await ask('revoke', { task_id: [] })) as { error: string }).error, /task_id/);
  });

  it('replies to shutdown before shutting down, and answers hello and clock', async () => {
    assert.deepEqual(await ask('shutdown'), { ok: 'shutting down' });
    assert.equal(fake.state.shutdowns, 1);
    assert.deepEqual(await ask('hello', { from_node: 'celery@elsewhere', revoked: {} }), { revoked: {}, clock: 7 });
    assert.deepEqual(await ask('clock'), { clock: 7 });
  });

  it('answers an unknown command with an error naming the commands it knows', async () => {
    const result = (await ask('frobnicate')) as { error: string };
    assert.match(result.error, /unknown command 'frobnicate'/);
    for (const command of ['ping', 'pool_grow', 'autoscale']) assert.ok(CONTROL_COMMANDS.includes(command));
    assert.ok(logged.some((l) => /unknown control command 'frobnicate'/.test(l.msg)));
  });

  it('drops what is not a request for it, without a reply and without crashing, and still answers afterwards', async () => {
    const client = mailbox;
    // Not addressed to it: another node's name, a glob that does not match.
    const other = await sendControl(client, { method: 'ping', destination: ['someone@else'], timeoutMs: 300 });
    assert.deepEqual(other.replies, []);
    const globbed = await sendControl(client, { method: 'ping', pattern: 'celery@*', matcher: 'glob', timeoutMs: 300 });
    assert.deepEqual(globbed.replies, []);
    // Malformed (no method), undecodable, stale: each logged and dropped.
    await client.broadcast({ arguments: {} } as never, requestHeaders(1, 10));
    // Not JSON, on the mailbox's own channel (memory://'s mailbox is the channel celery.pidbox).
    await createChannelEngine(mailboxUrl).publish('celery.pidbox', 'not JSON {');
    const stale = controlRequest('shutdown', {}, { destination: [NODE] });
    await client.broadcast(stale, requestHeaders(1, 1, Date.now() - 60_000));
    assert.equal(fake.state.shutdowns, 0, 'a stale shutdown is not run');
    assert.ok(logged.some((l) => /malformed control message/.test(l.msg)));
    assert.ok(logged.some((l) => /does not decode/.test(l.msg)));
    assert.ok(logged.some((l) => /stale control request 'shutdown'/.test(l.msg)));
    assert.deepEqual(await ask('ping'), { ok: 'pong' });
  });
});
