// POST /api/control/:command against a real worker (in-process, async pool) on a sqlite:// broker file, through
// two gateways on that broker: one with a token, one without. Inspections answer with each worker's reply by
// node and name the destinations that did not answer; commands change the worker (pool-grow shows in stats,
// revoke with terminate stops a running task); on the open gateway the commands that change workers are 403;
// arguments are checked before anything reaches the broker (400), and an unknown command is 404.
// Waits poll what the gateway or the result store answers, never a time.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { currentTask, Fennel, Worker } from '../../src/index.ts';
import { createGateway, type Gateway } from '../../src/gateway/gateway.ts';
import { tempDb, uniqueQueue, waitFor } from '../support/process.ts';
import { post } from './support.ts';

const TOKEN = 'control-token';
const BEARER = { authorization: `Bearer ${TOKEN}` };
/** Generous: replies travel through the broker file, on a 2-core machine busy with other tests. */
const REPLY_MS = 10_000;
const WAIT_MS = 30_000;

interface ControlAnswer {
  replies: Record<string, unknown>;
  missing: string[];
  ok: boolean;
}

describe('POST /api/control/:command', () => {
  const db = tempDb();
  const queue = uniqueQueue('gwctl');
  // Three apps on one broker file, as three processes would be: the worker's and each gateway's.
  const workerApp = new Fennel({ broker: db.url, defaultQueue: queue });
  const openApp = new Fennel({ broker: db.url, defaultQueue: queue });
  const securedApp = new Fennel({ broker: db.url, defaultQueue: queue });
  const sleep = workerApp.task('gwctl.sleep', async (ms: number) => {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      currentTask().signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    return ms;
  });
  const worker = new Worker(workerApp, { pool: 'async', concurrency: 1, hostname: `${uniqueQueue('ctl')}@test`, logger: pino({ level: 'silent' }) });
  let open: { gateway: Gateway; url: string };
  let secured: { gateway: Gateway; url: string };

  async function start(app: Fennel, token?: string): Promise<{ gateway: Gateway; url: string }> {
    const gateway = await createGateway(app, { port: 0, ...(token ? { token } : {}) });
    return { gateway, url: await gateway.listen() };
  }

  before(async () => {
    await worker.start();
    open = await start(openApp);
    secured = await start(securedApp, TOKEN);
  });
  after(async () => {
    await open?.gateway.close();
    await secured?.gateway.close();
    await worker.stop(1);
    await Promise.all([workerApp.close(), openApp.close(), securedApp.close()]);
    db.cleanup();
  });

  async function control(url: string, command: string, body: unknown, headers: Record<string, string> = {}): Promise<ControlAnswer> {
    const answer = await post(url, `/api/control/${command}`, body, headers);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return answer.body as unknown as ControlAnswer;
  }

  const stats = async (): Promise<{ pool: { 'max-concurrency': number } }> =>
    (await control(secured.url, 'stats', { destination: [worker.name], timeoutMs: REPLY_MS }, BEARER)).replies[worker.name] as { pool: { 'max-concurrency': number } };

  describe('inspections', () => {
    it("ping answers the worker's pong by node, ok, with or without a destination", async () => {
      const addressed = await control(open.url, 'ping', { destination: [worker.name], timeoutMs: REPLY_MS });
      assert.deepEqual(addressed, { replies: { [worker.name]: { ok: 'pong' } }, missing: [], ok: true });
      // Without a destination the gateway gathers until the timeout: every worker on the broker may answer.
      const everyone = await control(open.url, 'ping', { timeoutMs: 3000 });
      assert.deepEqual(everyone.replies[worker.name], { ok: 'pong' });
      assert.equal(everyone.ok, true);
      // A glob pattern addresses by name, as `fennel inspect ping -p` does.
      const matched = await control(open.url, 'ping', { pattern: `${worker.name.split('@')[0]}@*`, timeoutMs: 3000 });
      assert.deepEqual(matched.replies, { [worker.name]: { ok: 'pong' } });
    });

    it('names a destination that does not answer in missing, and is not ok', async () => {
      const nobody = await control(open.url, 'ping', { destination: ['nobody@nowhere'], timeoutMs: 500 });
      assert.deepEqual(nobody, { replies: {}, missing: ['nobody@nowhere'], ok: false });
      const half = await control(open.url, 'ping', { destination: [worker.name, 'nobody@nowhere'], timeoutMs: REPLY_MS });
      assert.deepEqual(half, { replies: { [worker.name]: { ok: 'pong' } }, missing: ['nobody@nowhere'], ok: false });
    });

    it("takes Celery's method names as well as the CLI's, and runs every inspection on a gateway without a token", async () => {
      for (const command of ['active', 'reserved', 'scheduled', 'registered', 'stats', 'revoked', 'active-queues', 'active_queues']) {
        const answer = await control(open.url, command, { destination: [worker.name], timeoutMs: REPLY_MS });
        assert.equal(answer.ok, true, `${command}: ${JSON.stringify(answer)}`);
        assert.ok(worker.name in answer.replies, `${command}: ${JSON.stringify(answer)}`);
      }
      const registered = await control(open.url, 'registered', { destination: [worker.name], timeoutMs: REPLY_MS });
      assert.deepEqual(registered.replies[worker.name], ['gwctl.sleep']);
      const queues = (await control(open.url, 'active_queues', { destination: [worker.name], timeoutMs: REPLY_MS })).replies[worker.name] as Array<{ name: string }>;
      assert.ok(queues.some((q) => q.name === queue), JSON.stringify(queues));
      const found = await control(open.url, 'query-task', { arguments: { ids: ['no-such-task'] }, destination: [worker.name], timeoutMs: REPLY_MS });
      assert.deepEqual(found.replies[worker.name], {});
    });
  });

  describe('token rules', () => {
    it('refuses the commands that change workers with 403 on a gateway without a token, and changes nothing', async () => {
      for (const [command, args] of [['pool-grow', { n: 1 }], ['shutdown', {}], ['pool_shrink', { n: 1 }], ['revoke', { task_id: 'x' }], ['rate-limit', { task_name: 'gwctl.sleep', rate_limit: '1/s' }]] as const) {
        const refused = await post(open.url, `/api/control/${command}`, { arguments: args, destination: [worker.name] });
        assert.equal(refused.status, 403, `${command}: ${JSON.stringify(refused.body)}`);
        assert.equal(refused.body['code'], 'TOKEN_REQUIRED');
        assert.match(String(refused.body['error']), /FENNEL_GATEWAY_TOKEN/);
      }
      assert.equal((await stats()).pool['max-concurrency'], 1);
      assert.deepEqual((await control(open.url, 'ping', { destination: [worker.name], timeoutMs: REPLY_MS })).ok, true, 'the worker is still up');
    });

    it('answers 401 without the token or with another one on a gateway that has one, inspections included', async () => {
      for (const headers of [{}, { authorization: 'Bearer not-the-token' }]) {
        for (const command of ['pool-grow', 'ping']) {
          const refused = await post(secured.url, `/api/control/${command}`, { destination: [worker.name] }, headers);
          assert.equal(refused.status, 401, `${command} with ${JSON.stringify(headers)}: ${JSON.stringify(refused.body)}`);
          assert.equal(refused.body['code'], 'UNAUTHORIZED');
        }
      }
    });
  });

  describe('commands, with the token', () => {
    it('pool-grow adds slots, as stats max-concurrency shows; pool-shrink takes them back', async () => {
      assert.equal((await stats()).pool['max-concurrency'], 1);
      const grown = await control(secured.url, 'pool-grow', { arguments: { n: 2 }, destination: [worker.name], timeoutMs: REPLY_MS }, BEARER);
      assert.deepEqual(grown, { replies: { [worker.name]: { ok: 'pool will grow' } }, missing: [], ok: true });
      // Answered at once, as Celery's; the pool has grown by the time the new slots have started.
      await waitFor(async () => (await stats()).pool['max-concurrency'] === 3, 'the pool to grow to 3 slots', 30_000);
      const shrunk = await control(secured.url, 'pool_shrink', { arguments: { n: 2 }, destination: [worker.name], timeoutMs: REPLY_MS }, BEARER);
      assert.equal(shrunk.ok, true, JSON.stringify(shrunk));
      await waitFor(async () => (await stats()).pool['max-concurrency'] === 1, 'the pool to shrink to 1 slot', 30_000);
    });

    it("is not ok when the worker refuses: its reply carries the worker's error", async () => {
      // A pool of one slot keeps it: the worker answers {error}, and the gateway says so.
      const refused = await control(secured.url, 'pool-shrink', { arguments: { n: 1 }, destination: [worker.name], timeoutMs: REPLY_MS }, BEARER);
      assert.equal(refused.ok, false);
      assert.match(String((refused.replies[worker.name] as { error?: string }).error), /keeps at least 1/);
      const notAutoscaling = await control(secured.url, 'autoscale', { arguments: { max: 3, min: 1 }, destination: [worker.name], timeoutMs: REPLY_MS }, BEARER);
      assert.equal(notAutoscaling.ok, false);
    });

    it('revoke with terminate stops a running task, which the active inspection listed: its result is REVOKED', async () => {
      const result = sleep.delay(600_000);
      let active: Array<{ id: string }> = [];
      await waitFor(
        async () => {
          active = (await control(secured.url, 'active', { destination: [worker.name], timeoutMs: REPLY_MS }, BEARER)).replies[worker.name] as Array<{ id: string }>;
          return active.some((t) => t.id === result.id);
        },
        `task ${result.id} in the worker's active list (last: ${JSON.stringify(active)})`,
        WAIT_MS,
      );
      const where = await control(secured.url, 'query-task', { arguments: { ids: result.id }, destination: [worker.name], timeoutMs: REPLY_MS }, BEARER);
      assert.equal((where.replies[worker.name] as Record<string, [string, unknown]>)[result.id]?.[0], 'active');
      const revoked = await control(secured.url, 'revoke', { arguments: { task_id: result.id, terminate: true }, destination: [worker.name], timeoutMs: REPLY_MS }, BEARER);
      assert.deepEqual(revoked, { replies: { [worker.name]: { ok: `terminate: ${result.id}` } }, missing: [], ok: true });
      await waitFor(async () => (await result.status()) === 'REVOKED', `task ${result.id} REVOKED (now ${await result.status()})`, WAIT_MS);
    });
  });

  describe('requests that never reach a worker', () => {
    const bad = async (command: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> => post(secured.url, `/api/control/${command}`, body, BEARER);

    it('answers 400 for arguments the command does not take, naming the argument', async () => {
      const cases: Array<[string, unknown, RegExp]> = [
        ['pool-grow', { arguments: { n: 0 } }, /arguments\.n: n must be a positive integer/],
        ['pool-grow', { arguments: { n: 1.5 } }, /n must be a positive integer/],
        ['pool-grow', { arguments: { count: 2 } }, /unknown argument 'count': pool-grow takes n/],
        ['autoscale', { arguments: { max: 2, min: 3 } }, /min \(3\) is greater than max \(2\)/],
        ['autoscale', { arguments: { max: 2 } }, /arguments\.min: min must be a positive integer/],
        ['rate-limit', { arguments: { task_name: 'gwctl.sleep' } }, /rate_limit must be a rate/],
        ['rate-limit', { arguments: { task_name: 'gwctl.sleep', rate_limit: 'fast' } }, /rate_limit must be a rate/],
        ['time-limit', { arguments: { task_name: 'gwctl.sleep', soft: 10, hard: 5 } }, /soft limit \(10 s\) is longer than the hard one \(5 s\)/],
        ['time-limit', { arguments: { soft: 1 } }, /task_name must be a non-empty string/],
        ['add-consumer', { arguments: {} }, /queue must be a non-empty string/],
        ['cancel_consumer', { arguments: { queue: '' } }, /queue must be a non-empty string/],
        ['revoke', { arguments: { task_id: [] } }, /task_id must list at least one task id/],
        ['revoke', { arguments: { task_id: 42 } }, /task_id must be a task id or a list of them/],
        ['query-task', { arguments: {} }, /ids must be a task id or a list of them/],
        ['ping', { arguments: { n: 1 } }, /unknown argument 'n': ping takes none/],
      ];
      for (const [command, body, reason] of cases) {
        const answer = await bad(command, body);
        assert.equal(answer.status, 400, `${command} ${JSON.stringify(body)}: ${JSON.stringify(answer.body)}`);
        assert.equal(answer.body['code'], 'INVALID_ARGUMENTS');
        assert.match(String(answer.body['error']), reason, `${command} ${JSON.stringify(body)}`);
      }
      assert.equal((await stats()).pool['max-concurrency'], 1, 'nothing was sent');
    });

    it('answers 400 for a body that is not {arguments, destination, pattern, matcher, timeoutMs}', async () => {
      const cases: Array<[unknown, RegExp]> = [
        [{ timeoutMs: 0 }, /timeoutMs must be an integer from 1 to 60000/],
        [{ timeoutMs: 60_001 }, /timeoutMs must be an integer from 1 to 60000/],
        [{ destination: 'ctl@test' }, /destination must be a list of node names/],
        [{ destination: [] }, /destination must name at least one node/],
        [{ destination: ['a@b'], pattern: 'a*' }, /destination or pattern, not both/],
        [{ matcher: 'glob' }, /matcher goes with a pattern/],
        [{ pattern: '(', matcher: 'pcre' }, /not a regular expression/],
        [{ pattern: 'a*', matcher: 'regex' }, /matcher must be 'glob' or 'pcre'/],
        [{ arguments: [1] }, /arguments must be an object/],
        [{ args: [] }, /Unrecognized key/],
        [[], /invalid control request/],
      ];
      for (const [body, reason] of cases) {
        const answer = await bad('ping', body);
        assert.equal(answer.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(answer.body)}`);
        assert.equal(answer.body['code'], 'BAD_REQUEST');
        assert.match(String(answer.body['error']), reason, JSON.stringify(body));
      }
      const notJson = await bad('ping', '{');
      assert.equal(notJson.status, 400);
    });

    it('answers 404 with the list of commands for an unknown one, on either gateway', async () => {
      for (const [url, headers] of [[secured.url, BEARER], [open.url, {}]] as const) {
        const answer = await post(url, '/api/control/reboot', {}, headers);
        assert.equal(answer.status, 404, JSON.stringify(answer.body));
        assert.equal(answer.body['code'], 'COMMAND_NOT_FOUND');
        const commands = answer.body['commands'] as string[];
        for (const command of ['ping', 'stats', 'active-queues', 'query-task', 'shutdown', 'pool-grow', 'pool-shrink', 'autoscale', 'rate-limit', 'time-limit', 'add-consumer', 'cancel-consumer', 'enable-events', 'disable-events', 'revoke']) {
          assert.ok(commands.includes(command), `${command} in ${JSON.stringify(commands)}`);
        }
        assert.match(String(answer.body['error']), /no control command 'reboot'; one of: ping, /);
      }
      // Celery's internal commands are not part of the API.
      assert.equal((await post(open.url, '/api/control/hello', {})).status, 404);
    });
  });

  describe('shutdown', () => {
    it('stops the worker after its reply; it answers no ping afterwards', async () => {
      const stopping = await control(secured.url, 'shutdown', { destination: [worker.name], timeoutMs: REPLY_MS }, BEARER);
      assert.deepEqual(stopping, { replies: { [worker.name]: { ok: 'shutting down' } }, missing: [], ok: true });
      await waitFor(async () => !(await control(open.url, 'ping', { destination: [worker.name], timeoutMs: 1000 })).ok, `${worker.name} to stop answering ping`, WAIT_MS);
    });
  });
});
