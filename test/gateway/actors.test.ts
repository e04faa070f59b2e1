// GET /api/actors against a real `fennel gateway` process and a real worker hosting actors (--actors) on sqlite://:
// two actors with their metadata, class, mode, host and availability, the calls each has run on its host (as the
// host announces them), and the live host; after the host's warm shutdown, the actors unavailable, their calls not
// known, and no live host. An rpc:// backend (RabbitMQ) answers empty lists with the reason; a backend that cannot
// be reached is 503; with a token, 401 without it. Waits poll what the gateway answers, never a time.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { HostRecord, NameListing } from '../../src/index.ts';
import { startWorker, stopProcess, tempDb, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { RABBIT_URL, rabbitSkipReason } from '../support/services.ts';
import { assertBrokerUnavailable, request, startGateway, stopGatewaysAndDeleteQueue, TASKS, type RunningGateway } from './support.ts';

/** Declares the Counter actor class (incr(k)); the worker hosts it, the gateway and this test use its app. */
const ACTORS_APP = 'test/integration/fixtures/names-app.ts';
/** Generous: the worker compiles its app with tsx first, on a 2-core machine busy with other processes. */
const WAIT_MS = 60_000;

type ActorsView = { actors: Array<NameListing & { calls: number | null }>; hosts: HostRecord[]; reason?: string };

async function actors(gateway: RunningGateway, headers: Record<string, string> = {}): Promise<ActorsView> {
  const answer = await request(gateway.url, 'GET', '/api/actors', headers);
  assert.equal(answer.status, 200, answer.text);
  return answer.body as unknown as ActorsView;
}

const db = tempDb();
// The fixture's app reads its broker from the environment when it is imported: this file's SQLite database.
process.env['FENNEL_BROKER_URL'] = db.url;
const { app, Counter } = await import('../integration/fixtures/names-app.ts');

describe('GET /api/actors with a worker hosting actors on sqlite://', () => {
  const node = `${uniqueQueue('gwactors')}@test`;
  let worker: RunningWorker | undefined;
  let gateway: RunningGateway;

  before(async () => {
    worker = await startWorker(ACTORS_APP, db.url, ['-P', 'async', '-c', '2', '--actors', '-n', node]);
    gateway = await startGateway({ FENNEL_BROKER_URL: db.url }, [], ACTORS_APP);
  });
  after(async () => {
    if (worker) await stopProcess(worker);
    if (gateway) await stopProcess(gateway.process, 'SIGTERM');
    await app.close();
    db.cleanup();
  });

  it('lists no actor before any is created, and the host once it has announced itself', async () => {
    let view = await actors(gateway);
    assert.deepEqual(view.actors, []);
    assert.equal(view.reason, undefined);
    await waitFor(async () => (view = await actors(gateway)).hosts.some((h) => h.node === node), `${node} among the live hosts (last answer: ${JSON.stringify(view)})`, WAIT_MS);
    assert.deepEqual(view.hosts.map((h) => [h.node, h.classes, h.actors, h.calls, h.callsByActor]), [[node, ['Counter'], 0, 0, {}]]);
  });

  it('lists both actors with class, mode, host, availability and metadata, and the calls each has run there', async () => {
    const hits = await Counter.create({ name: 'hits', meta: { team: 'web' } });
    const misses = await Counter.create({ name: 'misses', meta: { team: 'db', tier: 'cold' } });
    for (const k of [1, 2, 3]) await hits.incr(k);
    assert.equal(await hits.incr(4), 10);
    const CALLS = 4;

    let view = await actors(gateway);
    // The host counts a call when it has run it, and says so in its next announcement (every 3 s).
    await waitFor(
      async () => (view = await actors(gateway)).actors.find((a) => a.name === 'hits')?.calls === CALLS,
      `hits' ${CALLS} calls in /api/actors (last answer: ${JSON.stringify(view)})`,
      WAIT_MS,
    );
    assert.deepEqual(
      view.actors.map((a) => [a.name, a.className, a.mode, a.host, a.state, a.available, a.restarts, a.meta, a.calls]),
      [
        ['hits', 'Counter', 'single', node, 'alive', true, 0, { team: 'web' }, CALLS],
        ['misses', 'Counter', 'single', node, 'alive', true, 0, { team: 'db', tier: 'cold' }, 0],
      ],
    );
    assert.equal(view.actors[0]!.id, hits.id);
    assert.equal(view.actors[1]!.id, misses.id);
    assert.deepEqual(view.hosts.map((h) => [h.node, h.actors, h.calls, h.callsByActor]), [[node, 2, CALLS, { [hits.id]: CALLS, [misses.id]: 0 }]]);

    // The same as `fennel names list --json` reads (both from the name server), with the calls added.
    const [listed, hosts] = await Promise.all([app.names.list(), app.names.hosts()]);
    // Without the constructor's arguments, which a page need not show.
    assert.deepEqual(view.actors.map(({ calls: _calls, ...listing }) => listing), listed.map(({ args: _args, ...listing }) => listing));
    assert.ok(view.actors.every((a) => !('args' in a)), 'no constructor arguments');
    assert.deepEqual(view.hosts.map((h) => h.node), hosts.map((h) => h.node));
  });

  it('after the host\'s warm shutdown: the actors unavailable on it, their calls not known, no live host', async () => {
    worker!.child.kill('SIGTERM');
    const exit = await worker!.exited;
    assert.equal(exit.code, 0, `${JSON.stringify(exit)}; ${worker!.lines.slice(-10).join('\n')}`);
    worker = undefined;
    // The host released its leases and withdrew its record before it exited: no waiting for them to lapse.
    const view = await actors(gateway);
    assert.deepEqual(view.hosts, []);
    assert.deepEqual(
      view.actors.map((a) => [a.name, a.host, a.state, a.available, a.calls]),
      [
        ['hits', node, 'alive', false, null],
        ['misses', node, 'alive', false, null],
      ],
    );
  });
});

describe('GET /api/actors with a token', () => {
  const TOKEN = 'actors-token';
  const empty = tempDb();
  let gateway: RunningGateway;
  before(async () => {
    gateway = await startGateway({ FENNEL_BROKER_URL: empty.url, FENNEL_GATEWAY_TOKEN: TOKEN });
  });
  after(async () => {
    if (gateway) await stopProcess(gateway.process, 'SIGTERM');
    empty.cleanup();
  });

  it('answers empty lists for a cluster without actors, and 401 without the token', async () => {
    const refused = await request(gateway.url, 'GET', '/api/actors');
    assert.equal(refused.status, 401);
    assert.equal(refused.body['code'], 'UNAUTHORIZED');
    assert.deepEqual(await actors(gateway, { authorization: `Bearer ${TOKEN}` }), { actors: [], hosts: [] });
  });
});

// rpc:// keeps no records or leases: no actor can live on it (Names' ConfigError). The gateway answers 200 with
// nothing to show, and the reason when the app declares actor classes; not a 400.
describe('GET /api/actors with an rpc:// backend', { skip: await rabbitSkipReason() }, () => {
  const queue = uniqueQueue('gwrpcactors');
  const env = { FENNEL_BROKER_URL: RABBIT_URL, FENNEL_RESULT_BACKEND: 'rpc://', FENNEL_DEFAULT_QUEUE: queue };
  const gateways: RunningGateway[] = [];
  after(() => stopGatewaysAndDeleteQueue(gateways, queue));

  it('answers empty lists with the reason for an app with actor classes, and just empty lists for one without', async () => {
    const withActors = await startGateway(env, [], ACTORS_APP);
    gateways.push(withActors);
    const view = await actors(withActors);
    assert.deepEqual([view.actors, view.hosts], [[], []]);
    assert.match(view.reason ?? '', /^actors need a result backend every process shares \(sqlite:\/\/, redis:\/\/\); rpc:\/\/.* is not$/);

    const without = await startGateway(env, [], TASKS);
    gateways.push(without);
    assert.deepEqual(await actors(without), { actors: [], hosts: [] });
  });
});

describe('GET /api/actors with its backend down', () => {
  it('answers 503 BROKER_UNAVAILABLE with Retry-After (redis:// with nothing listening), as the other routes do', async () => {
    await assertBrokerUnavailable('/api/actors', ACTORS_APP);
  });
});
