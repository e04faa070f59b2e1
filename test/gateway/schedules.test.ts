// GET /api/schedules against a real `fennel gateway` process and a real `fennel beat` process: the app's two
// schedules with their last and next fires and the leading beat, as `fennel schedules --json` prints them; a
// beat stopped with SIGTERM gives its lease up, so the leader is gone as soon as it has exited. On sqlite://
// always and redis:// when Redis is up (this folder's db 9); an rpc:// backend (RabbitMQ) answers an empty list
// with the reason; a backend that cannot be reached is 503. Waits poll what the gateway answers, never a time.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BeatStatus, ScheduleStatus } from 'fennel';
import { runCli, runCliToEnd, stopProcess, tempDb, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';
import { assertBrokerUnavailable, request, startGateway, stopGatewaysAndDeleteQueue, TASKS, type RunningGateway } from './support.ts';

const BEAT_TASKS = 'test/gateway/fixtures/beat-tasks.ts';
/** Generous: a beat process compiles its app with tsx first, on a 2-core machine busy with other processes. */
const WAIT_MS = 60_000;

type SchedulesView = BeatStatus & { reason?: string };

async function schedules(gateway: RunningGateway, headers: Record<string, string> = {}): Promise<SchedulesView> {
  const answer = await request(gateway.url, 'GET', '/api/schedules', headers);
  assert.equal(answer.status, 200, answer.text);
  return answer.body as unknown as SchedulesView;
}

const byName = (view: SchedulesView, name: string): ScheduleStatus => {
  const found = view.schedules.find((s) => s.name === name);
  assert.ok(found, `schedule ${name} in ${JSON.stringify(view)}`);
  return found;
};

/** The view without what moves with the clock (the next fire, the lease's renewal), to compare two reads. */
const still = (view: SchedulesView): unknown => ({ leader: view.leader?.beat ?? null, schedules: view.schedules.map(({ next: _next, ...rest }) => rest) });

function beatSuite(engine: string, skip: string | false, setup: () => Promise<{ url: string; cleanup: () => Promise<void> | void }>): void {
  describe(`GET /api/schedules with fennel beat on ${engine}`, { skip }, () => {
    let env: Record<string, string>;
    let gateway: RunningGateway;
    let beat: RunningWorker | undefined;
    let cleanup: () => Promise<void> | void = () => {};

    before(async () => {
      const made = await setup();
      cleanup = made.cleanup;
      // A beat group of this run's own: no other beat on the engine shares its lease or its records.
      env = { FENNEL_BROKER_URL: made.url, FENNEL_DEFAULT_QUEUE: uniqueQueue('gwbeat'), FENNEL_BEAT_GROUP: uniqueQueue('gwbeat') };
      gateway = await startGateway(env, [], BEAT_TASKS);
    });
    after(async () => {
      if (beat) await stopProcess(beat, 'SIGKILL');
      if (gateway) await stopProcess(gateway.process, 'SIGTERM');
      await cleanup();
    });

    it('lists both schedules, never fired and no leader, before any beat runs', async () => {
      const view = await schedules(gateway);
      assert.equal(view.leader, null);
      assert.equal(view.reason, undefined);
      assert.deepEqual(
        view.schedules.map((s) => [s.name, s.when, s.task, s.catchUp, s.lastDue, s.lastBeat]),
        [
          ['gwbeat.every-second', 'every 1s', 'gwbeat.add', 'none', null, null],
          ['gwbeat.nightly', 'cron 30 2 * * * (Europe/Paris)', 'gwbeat.cleanup', 'last', null, null],
        ],
      );
      for (const s of view.schedules) assert.ok(s.next !== null && !Number.isNaN(Date.parse(s.next)), `${s.name}: next is an ISO time (${s.next})`);
      // 02:30 in Paris is 00:30 or 01:30 UTC, by the season.
      assert.match(byName(view, 'gwbeat.nightly').next!, /T0[01]:30:00\.000Z$/);
    });

    it('shows the beat leading and its fires; after SIGTERM the leader is gone and the fires stay, as `fennel schedules` says', async () => {
      beat = runCli(['beat', '-A', BEAT_TASKS, '-n', 'gw-beat-a'], env);
      let view = await schedules(gateway);
      await waitFor(
        async () => {
          view = await schedules(gateway);
          return view.leader?.beat === 'gw-beat-a' && byName(view, 'gwbeat.every-second').lastDue !== null;
        },
        `the beat leading and a first fire in /api/schedules (last answer: ${JSON.stringify(view)}; beat output: ${beat.lines.slice(-10).join('\n')})`,
        WAIT_MS,
      );
      assert.ok(!Number.isNaN(Date.parse(view.leader!.leaseUntil)), `leaseUntil is an ISO time (${view.leader!.leaseUntil})`);
      const fired = byName(view, 'gwbeat.every-second');
      assert.equal(fired.lastBeat, 'gw-beat-a');
      assert.match(fired.lastTaskId ?? '', /^[0-9a-f-]{36}$/);
      assert.equal(new Date(fired.lastDue!).getUTCMilliseconds(), 0, 'an every-1s due time is on a whole second');
      assert.equal(byName(view, 'gwbeat.nightly').lastDue, null);

      beat.child.kill('SIGTERM');
      const exit = await beat.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, beat.lines.slice(-10).join('\n'));
      beat = undefined;
      // The beat released its lease before it exited: no waiting for the lease to lapse.
      const stopped = await schedules(gateway);
      assert.equal(stopped.leader, null);
      assert.equal(byName(stopped, 'gwbeat.every-second').lastBeat, 'gw-beat-a');
      assert.ok(Date.parse(byName(stopped, 'gwbeat.every-second').lastDue!) >= Date.parse(fired.lastDue!));

      // The same as the CLI reads from the engine (both from the same lease and records).
      const cli = await runCliToEnd(['schedules', '-A', BEAT_TASKS, '--json'], env, WAIT_MS);
      assert.equal(cli.code, 0, cli.stderr.join('\n'));
      assert.deepEqual(still(JSON.parse(cli.stdout.join('\n')) as SchedulesView), still(stopped));
    });
  });
}

beatSuite('sqlite://', false, async () => {
  const db = tempDb();
  return { url: db.url, cleanup: () => db.cleanup() };
});

beatSuite('redis://', await redisSkipReason(), async () => {
  await flushRedisDb(REDIS_DB.gateway);
  return { url: redisUrlForTest(REDIS_DB.gateway), cleanup: () => flushRedisDb(REDIS_DB.gateway) };
});

describe('GET /api/schedules for an app without schedules, and with a token', () => {
  const TOKEN = 'sched-token';
  const db = tempDb();
  let gateway: RunningGateway;
  before(async () => {
    gateway = await startGateway({ FENNEL_BROKER_URL: db.url, FENNEL_GATEWAY_TOKEN: TOKEN });
  });
  after(async () => {
    if (gateway) await stopProcess(gateway.process, 'SIGTERM');
    db.cleanup();
  });

  it('answers no leader and an empty list, and 401 without the token', async () => {
    const refused = await request(gateway.url, 'GET', '/api/schedules');
    assert.equal(refused.status, 401);
    assert.equal(refused.body['code'], 'UNAUTHORIZED');
    assert.deepEqual(await schedules(gateway, { authorization: `Bearer ${TOKEN}` }), { leader: null, schedules: [] });
  });
});

// rpc:// keeps no state but replies: no beat can run on it (beatBackend's ConfigError). The gateway answers 200
// with nothing to show, and the reason when the app registers schedules; not a 500.
describe('GET /api/schedules with an rpc:// backend', { skip: await rabbitSkipReason() }, () => {
  const queue = uniqueQueue('gwrpc');
  const env = { FENNEL_BROKER_URL: RABBIT_URL, FENNEL_RESULT_BACKEND: 'rpc://', FENNEL_DEFAULT_QUEUE: queue };
  const gateways: RunningGateway[] = [];
  after(() => stopGatewaysAndDeleteQueue(gateways, queue));

  it('answers an empty list with the reason for an app with schedules, and just an empty list for one without', async () => {
    const withSchedules = await startGateway(env, [], BEAT_TASKS);
    gateways.push(withSchedules);
    const view = await schedules(withSchedules);
    assert.equal(view.leader, null);
    assert.deepEqual(view.schedules, []);
    assert.match(view.reason ?? '', /rpc:\/\/.*cannot hold them: give the app a sqlite:\/\/ or redis:\/\/ backend/);

    const without = await startGateway(env, [], TASKS);
    gateways.push(without);
    assert.deepEqual(await schedules(without), { leader: null, schedules: [] });
  });
});

describe('GET /api/schedules with its backend down', () => {
  it('answers 503 BROKER_UNAVAILABLE with Retry-After (redis:// with nothing listening), as the other routes do', async () => {
    await assertBrokerUnavailable('/api/schedules', BEAT_TASKS);
  });
});
