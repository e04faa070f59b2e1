// Fennel's chord join on Redis against what Celery 5.2 itself writes (golden file test/fixtures/celery-chord-redis.json,
// captured from a real Celery client and worker by test/fixtures/capture/capture_chord.py): the same keys, the same
// entries, the same size key, so Celery's workers and Fennel's join one chord together (issue #17). Runs the
// backend's scripts on a real Redis (127.0.0.1:6379, database 13, flushed before each test); skips without Redis,
// fails without it when CI=true.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { RedisBackend } from '../../../src/backends/redis.ts';
import { dependencyMessage } from '../../../src/worker/workflow.ts';
import { flushRedisDb, REDIS_DB, redisSkipReason, redisUrlForTest, testRedisClient } from '../../support/services.ts';

const DB = REDIS_DB.unit;
const REDIS_URL = redisUrlForTest(DB);
const skip = await redisSkipReason();

/** One step of the capture: a command, or a MULTI/EXEC transaction, and who sent it. */
type Step = { who: string; command: string[] } | { who: string; transaction: string[][] };
interface Message {
  headers: { task: string; id: string; group: string | null; group_index: number | null };
  body: [unknown[], Record<string, unknown>, Record<string, unknown>];
}
interface Capture {
  complete: { groupId: string; callbackId: string; memberIds: string[]; commands: Step[]; memberMessages: Message[]; callbackMessage: Message; result: number; keysAfter: string[] };
  partial: {
    groupId: string;
    callbackId: string;
    values: unknown[];
    keys: { '.s': { value: string; ttl: number; type: string }; '.t': { value: string | null; ttl: number }; '.j': { type: string; ttl: number; entries: Array<{ member: string; score: number }> } };
    held: Message;
    heldEntry: { command: string[] };
    callbackMessage: Message;
  };
  failure: { groupId: string; callbackId: string; memberIds: string[]; commands: Step[]; callbackMeta: { status: string; result: { exc_type: string; exc_message: unknown[]; exc_module: string } }; keysAfter: string[] };
}

const golden = JSON.parse(readFileSync(new URL('../../fixtures/celery-chord-redis.json', import.meta.url), 'utf8')) as Capture;

/** Every command of the capture's steps, flattened (a transaction's in order). */
function commandsOf(steps: Step[]): Array<{ who: string; command: string[] }> {
  return steps.flatMap((step) => ('transaction' in step ? step.transaction.map((command) => ({ who: step.who, command })) : [{ who: step.who, command: step.command }]));
}

/** The ZADDs of Celery's members onto `.j`: [score, entry], in the order they were made. */
function celeryEntries(steps: Step[]): Array<[number, string]> {
  return commandsOf(steps)
    .filter(({ command }) => command[0] === 'ZADD' && command[1]!.endsWith('.j'))
    .map(({ command }) => [Number(command[2]), command[3]!]);
}

const keysOf = (groupId: string): { j: string; t: string; s: string; done: string } => ({
  j: `celery-taskset-meta-${groupId}.j`,
  t: `celery-taskset-meta-${groupId}.t`,
  s: `celery-taskset-meta-${groupId}.s`,
  done: `fennel.chord.${groupId}.done`,
});

describe("Redis chord join in Celery's layout (golden: what Celery 5.2 writes)", { skip }, () => {
  let redis: Redis;
  let backend: RedisBackend;

  before(async () => {
    await flushRedisDb(DB);
    redis = testRedisClient(DB);
    backend = new RedisBackend(REDIS_URL);
  });
  after(async () => {
    await backend?.close();
    redis?.disconnect();
    await flushRedisDb(DB);
  });
  beforeEach(() => flushRedisDb(DB));

  /** Puts Redis in the state the capture read at rest: three of four members joined by Celery's worker. */
  async function celeryAtRest(): Promise<void> {
    const { groupId, keys } = golden.partial;
    const k = keysOf(groupId);
    await redis.set(k.s, keys['.s'].value, 'EX', keys['.s'].ttl);
    // Added last first: the zset orders them by score (group_index), whatever the order of arrival.
    for (const { member, score } of [...keys['.j'].entries].reverse()) await redis.zadd(k.j, score, member);
    await redis.expire(k.j, keys['.j'].ttl);
  }

  it('the capture is what this test assumes: Celery sized the chord in .s, and its members carry no size', () => {
    const { partial, complete } = golden;
    assert.equal(partial.keys['.s'].type, 'string');
    assert.equal(partial.keys['.j'].type, 'zset');
    assert.equal(partial.keys['.t'].value, null, 'no .t unless a member is added to a running chord');
    assert.deepEqual(partial.keys['.j'].entries.map((e) => e.score), [0, 1, 2]);
    for (const message of [...complete.memberMessages, partial.held]) {
      const chord = message.body[2]['chord'] as Record<string, unknown>;
      assert.equal(chord['chord_size'], undefined, "Celery's embed.chord has no chord_size: the size is only in .s");
    }
    assert.deepEqual(complete.keysAfter, [], "Celery's completing worker DELs the three keys");
  });

  it('completes a chord Celery started, on the keys Celery left: the last member is first, with every result in group_index order', async () => {
    const { groupId, held, heldEntry, values, callbackMessage } = golden.partial;
    await celeryAtRest();
    const k = keysOf(groupId);
    const join = await backend.chordJoin(groupId, held.headers.group_index!, 0, JSON.stringify(held.body[0][0]), true, held.headers.id);
    assert.deepEqual(join, { complete: true, first: true, results: values });
    assert.deepEqual(join.results, callbackMessage.body[0][0], "the same results Celery's worker sent its callback");
    // The entry Fennel added is the one Celery's worker ZADDed for the same member, byte for byte.
    assert.deepEqual(await redis.zrangebyscore(k.j, 3, 3), [heldEntry.command[3]]);
    assert.equal(heldEntry.command[2], '3');
    // Done: .s and .t gone (a Celery worker joining late finds no size and sends nothing), the marker set,
    // the entries kept for their expiry (a callback sent by reference reads them).
    assert.equal(await redis.exists(k.s, k.t), 0);
    assert.equal(await redis.get(k.done), '4');
    assert.ok((await redis.ttl(k.done)) > 3600);
    assert.equal(await redis.zcard(k.j), 4);
  });

  it("writes each member's entry as Celery's worker does (byte for byte for a scalar result), and sizes the chord as Celery's producer", async () => {
    const { callbackId, memberIds, commands, callbackMessage } = golden.complete;
    const groupId = randomUUID();
    const k = keysOf(groupId);
    await backend.chordStart(groupId, memberIds.length, callbackId);
    const setex = commandsOf(commands).find(({ who, command }) => who === 'producer' && command[0] === 'SETEX')!.command;
    assert.equal(await redis.get(k.s), setex[3], '.s holds the size as Celery writes it');
    assert.ok(Math.abs((await redis.ttl(k.s)) - Number(setex[2])) <= 5, `.s expires with the results, as Celery's SETEX ${setex[2]}`);
    assert.equal(await redis.type(k.s), 'string');
    const celery = celeryEntries(commands);
    const results = callbackMessage.body[0][0] as number[];
    const joins = [];
    for (const [i, id] of memberIds.entries()) joins.push(await backend.chordJoin(groupId, i, memberIds.length, JSON.stringify(results[i]), false, id));
    assert.deepEqual(joins.map((j) => [j.complete, j.first]), [[false, false], [false, false], [false, false], [true, true]]);
    assert.deepEqual(await redis.zrange(k.j, 0, -1, 'WITHSCORES'), celery.flatMap(([score, entry]) => [entry, String(score)]), "Celery's exact entries and scores");
    assert.deepEqual(await backend.chordResults(groupId, memberIds.length), results, "the callback's results, as Celery's worker sent them");
  });

  it('a member that joined before .s existed waits for it (Celery writes .s only before sending its last member)', async () => {
    const { groupId, memberIds, commands, callbackMessage } = golden.complete;
    const k = keysOf(groupId);
    const results = callbackMessage.body[0][0] as number[];
    // The capture's order (in the golden file, member 0 joined before the producer wrote .s; how many do
    // depends on the run, but never the last one sent, which goes after .s).
    const order = commandsOf(commands).filter(({ command }) => command[0] === 'ZADD' || command[0] === 'SETEX').map(({ command }) => (command[0] === 'SETEX' ? 's' : Number(command[2])));
    assert.ok(order.indexOf('s') >= 0 && order.indexOf('s') < order.length - 1, `the order of the joins and the write of .s: ${order.join(' ')}`);
    const seen = [];
    for (const step of order) {
      if (step === 's') await redis.set(k.s, String(memberIds.length), 'EX', 86_400);
      else seen.push(await backend.chordJoin(groupId, step, 0, JSON.stringify(results[step]), true, memberIds[step]));
    }
    const incomplete = { complete: false, first: false, results: [] };
    assert.deepEqual(seen, [incomplete, incomplete, incomplete, { complete: true, first: true, results }]);
  });

  it("counts Celery's .t: members added to a chord after it started", async () => {
    const groupId = randomUUID();
    const k = keysOf(groupId);
    await redis.set(k.s, '2');
    await redis.incr(k.t); // Celery's add_to_chord
    assert.equal((await backend.chordJoin(groupId, 0, 0, '1', true, randomUUID())).complete, false);
    assert.equal((await backend.chordJoin(groupId, 1, 0, '2', true, randomUUID())).complete, false, '.s alone would say complete');
    assert.deepEqual(await backend.chordJoin(groupId, 2, 0, '3', true, randomUUID()), { complete: true, first: true, results: [1, 2, 3] });
    assert.equal(await redis.get(k.done), '3');
  });

  it('a member joined again (redelivered, on either side) counts once, and after completion learns only that the join is complete', async () => {
    const { groupId, held, values } = golden.partial;
    await celeryAtRest();
    const k = keysOf(groupId);
    // Member 1, which Celery's worker ran, run again by a Fennel worker with another result: changes nothing.
    assert.deepEqual(await backend.chordJoin(groupId, 1, 0, '"again"', true, randomUUID()), { complete: false, first: false, results: [] });
    assert.equal(await redis.zcard(k.j), 3);
    const last = await backend.chordJoin(groupId, 3, 0, '7', false, held.headers.id);
    assert.deepEqual(last, { complete: true, first: true, results: [] });
    for (const index of [0, 3]) {
      assert.deepEqual(await backend.chordJoin(groupId, index, 0, '"late"', true, randomUUID()), { complete: true, first: false, results: values }, `member ${index} joined again`);
    }
    assert.equal(await redis.zcard(k.j), 4);
  });

  it("chordResults reads Celery's entries back in group_index order once all are in (a callback sent by reference)", async () => {
    const { groupId, held, values } = golden.partial;
    await celeryAtRest();
    assert.equal(await backend.chordResults(groupId, 4), undefined, 'one member is still missing');
    await backend.chordJoin(groupId, 3, 0, '7', false, held.headers.id);
    assert.deepEqual(await backend.chordResults(groupId, 4), values);
    assert.equal(await backend.chordResults(groupId, 5), undefined);
    assert.equal(await backend.chordResults(randomUUID(), 2), undefined, 'no join at all');
  });

  it("a FAILURE entry Celery's worker wrote fails the chord with Celery's own ChordError text", async () => {
    const { groupId, memberIds, commands, callbackMeta } = golden.failure;
    const k = keysOf(groupId);
    const setex = commandsOf(commands).find(({ command }) => command[0] === 'SETEX')!.command;
    await redis.set(k.s, setex[3]!);
    // Celery's first two entries (a SUCCESS and the FAILURE); the third member joins through Fennel.
    const [first, failed, third] = celeryEntries(commands);
    for (const [score, entry] of [first!, failed!]) await redis.zadd(k.j, score, entry);
    const join = await backend.chordJoin(groupId, third![0], 0, '4', true, memberIds[2]);
    const exception = { exc_type: 'ValueError', exc_message: ['boom', 42], exc_module: 'builtins' };
    assert.deepEqual(join, { complete: true, first: true, results: [2, exception, 4], failed: { taskId: memberIds[1], status: 'FAILURE', result: exception } });
    assert.equal(dependencyMessage(join.failed), callbackMeta.result.exc_message[0], "the ChordError message Celery's worker stored");
    assert.equal(callbackMeta.result.exc_type, 'ChordError');
    assert.deepEqual(await backend.chordResults(groupId, 3), { failed: join.failed });
  });

  it('chordStart leaves a chord alone once its join is done or its callback has a result (the chord sent again)', async () => {
    const done = randomUUID();
    await redis.set(keysOf(done).done, '4');
    await backend.chordStart(done, 4, randomUUID());
    assert.equal(await redis.exists(keysOf(done).s), 0);
    const called = randomUUID();
    const callbackId = randomUUID();
    await redis.set(`celery-task-meta-${callbackId}`, JSON.stringify({ status: 'SUCCESS', result: 1, task_id: callbackId }));
    await backend.chordStart(called, 4, callbackId);
    assert.equal(await redis.exists(keysOf(called).s), 0);
    const fresh = randomUUID();
    await backend.chordStart(fresh, 4, randomUUID());
    assert.equal(await redis.get(keysOf(fresh).s), '4');
  });
});
