// The Wyndor LP app end to end over HTTP: its tasks in a real worker process (process pool, GLPK), submitted
// through a real gateway, results pushed over the WebSocket. sqlite://, the `npm start` configuration.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startWorker, stopProcess, tempDb, type RunningWorker } from '../support/process.ts';
import { connect, post, startGateway, taskMessage, type PushClient, type RunningGateway } from './support.ts';

const APP = 'examples/wyndor/tasks.ts';

describe('Wyndor LP app over the gateway', () => {
  const db = tempDb();
  let worker: RunningWorker;
  let gateway: RunningGateway;
  let ws: PushClient;

  before(async () => {
    worker = await startWorker(APP, db.url, ['-P', 'process', '-c', '1', '-E']);
    gateway = await startGateway({ FENNEL_BROKER_URL: db.url }, ['--site', 'examples/wyndor/public'], APP);
    ws = await connect(gateway.url);
  });
  after(async () => {
    ws?.close();
    if (gateway) await stopProcess(gateway.process, 'SIGTERM');
    if (worker) await stopProcess(worker, 'SIGTERM');
    db.cleanup();
  });

  /** Submits and returns the pushed result of a successful task. */
  async function solved(name: string, args: unknown[]): Promise<Record<string, unknown>> {
    const submitted = await post(gateway.url, `/api/tasks/${name}`, { args });
    assert.equal(submitted.status, 202, JSON.stringify(submitted.body));
    const id = submitted.body['id'] as string;
    ws.send({ op: 'subscribe', ids: [id] });
    const message = await ws.next((m) => taskMessage(id)(m) && ['SUCCESS', 'FAILURE'].includes((m['task'] as { state: string }).state), `${name} finished`);
    const task = message['task'] as { state: string; result: Record<string, unknown>; error?: unknown };
    assert.equal(task.state, 'SUCCESS', JSON.stringify(task.error));
    return task.result;
  }

  it('p = 100: objective 1500 with 4 doors and 3 windows; door fabrication and assembly binding', async () => {
    const result = await solved('wyndor.solve', [100]);
    assert.equal(result['status'], 'optimal');
    assert.equal(result['objective'], 1500);
    assert.deepEqual(result['variables'], { doors: 4, windows: 3 });
    assert.deepEqual(result['constraints'], [
      { name: 'door_fab', usage: 4, max: 4, slack: 0 },
      { name: 'window_fab', usage: 6, max: 12, slack: 6 },
      { name: 'assembly', usage: 18, max: 18, slack: 0 },
    ]);
  });

  it('p = 500: objective 3600 with 2 doors and 6 windows', async () => {
    const result = await solved('wyndor.solve', [500]);
    assert.equal(result['objective'], 3600);
    assert.deepEqual(result['variables'], { doors: 2, windows: 6 });
  });

  it('solves a whole model with integer variables', async () => {
    const result = await solved('lp.solve', [{ sense: 'max', objective: { x: 1, y: 1 }, constraints: [{ name: 'c', coefs: { x: 2, y: 2 }, max: 3 }], integer: ['x', 'y'] }]);
    assert.equal(result['status'], 'optimal');
    assert.equal(result['objective'], 1);
  });

  it('reports an infeasible model and an unbounded one as results, with what they mean', async () => {
    const infeasible = await solved('lp.solve', [{ sense: 'max', objective: { x: 1 }, constraints: [{ name: 'low', coefs: { x: 1 }, max: 1 }, { name: 'high', coefs: { x: 1 }, min: 2 }] }]);
    assert.equal(infeasible['status'], 'infeasible');
    assert.equal(infeasible['objective'], null);
    const unbounded = await solved('lp.solve', [{ sense: 'max', objective: { x: 1 }, constraints: [{ name: 'c', coefs: { x: 1 }, min: 1 }] }]);
    assert.equal(unbounded['status'], 'unbounded');
    assert.match(String(unbounded['message']), /without limit/);
  });

  it('answers 400 with the reasons for an invalid model, and for a p that is not a number', async () => {
    const bad = await post(gateway.url, '/api/tasks/lp.solve', { args: [{ sense: 'up', objective: {}, constraints: [{ name: 'c', coefs: { x: 'one' }, min: 2, max: 1 }] }] });
    assert.equal(bad.status, 400);
    const error = String(bad.body['error']);
    assert.match(error, /args\.0\.sense/);
    assert.match(error, /args\.0\.objective: needs at least one variable/);
    assert.match(error, /args\.0\.constraints\.0\.coefs\.x/);
    const badP = await post(gateway.url, '/api/tasks/wyndor.solve', { args: ['lots'] });
    assert.equal(badP.status, 400);
  });

  it('refuses an empty or missing p (never read as 0), a negative one and one past the limit, each with the reason', async () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ['an empty string', { args: [''] }, /args\.0: .*expected number, received string/],
      ['null', { args: [null] }, /args\.0: .*expected number/],
      ['no argument', { args: [] }, /args: .*>=1 items/],
      ['no body at all', {}, /args: .*>=1 items/],
      ['a negative p', { args: [-5] }, /args\.0: .*>=0/],
      ['a p past 1e9', { args: [2e9] }, /args\.0: .*<=1000000000/],
      ['kwargs', { args: [500], kwargs: { p: 500 } }, /kwargs: not accepted/],
    ];
    for (const [what, body, reason] of cases) {
      const answer = await post(gateway.url, '/api/tasks/wyndor.solve', body);
      assert.equal(answer.status, 400, `${what}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body['code'], 'INVALID_ARGUMENTS', what);
      assert.match(String(answer.body['error']), reason, what);
    }
  });

  it('serves the Wyndor page at /', async () => {
    const page = await fetch(`${gateway.url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /Wyndor Glass/);
  });
});
