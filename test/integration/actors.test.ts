// Actors (issue #18, src/actors/) end to end, with real `fennel worker --actors` processes on sqlite:// (a temp
// file), redis:// (database REDIS_DB.semantics, flushed before and after) and amqp:// (RabbitMQ, results and the
// name server in that Redis database; the actor queues `fennel.actor.<id>` and the workers' direct queues
// `<node>.dq2` are deleted afterwards). On each engine:
//   1. create({ name, meta }), calls awaited, `.async` (an AsyncResult) and `.oneway`; lookup(name) here and from a
//      second process (fixtures/actors-lookup.ts) reaches the same state; app.names.list({ prefix, meta }) lists it
//      with its host, available; destroy() removes it (no listing; lookup throws ActorNotFoundError);
//   2. the instance modes, each seen from two proxies: single (one instance), session (one per proxy; close() drops
//      it), percall (a fresh instance per call);
//   3. 1,000 concurrent `incr(1)` from 4 proxies on one single actor: exactly 1,000, each proxy's values increasing
//      in the order it sent its calls;
//   4. two hosts; actors pinned to host A, which is SIGKILLed while a call is in flight and calls wait behind it: the
//      one with snapshots restarts on host B with an exact count (every call answered once, each value once) and
//      restarts 1; the one created with { restart: false } fails its pending and later calls with ActorDiedError;
//   5. an actor placed on a host whose prefetch window is full (its start message waits in the broker) is neither
//      restarted nor declared dead by that host's takeover scan meanwhile: once started, restarts 0 and alive;
//   6. a worker with a signing key: a signed proxy works; a call published raw to the actor's queue unsigned, signed
//      with another key, or signed and then changed (body, eta) is dead-lettered with a SignatureError reason and
//      does not change the count (a raw call signed with the key does).
//
// Nothing is timed: a call "in flight" is `incrHeld`, which holds until the test creates its gate file, and every
// wait polls for the condition that makes the next step certain, with a generous deadline.
// Missing Redis or RabbitMQ skips that engine with one line, except on CI (CI=true), where it fails.
// ACTORS_TEST_ENGINES=sqlite (a comma-separated list) runs only those engines.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { ActorNotFoundError, AsyncResult, Fennel } from '../../src/index.ts';
import { actorQueue } from '../../src/actors/names.ts';
import { buildTaskMessage, type WireMessage } from '../../src/protocol/message.ts';
import { Signer } from '../../src/protocol/signing.ts';
import { within } from '../conformance/helpers/wait.ts';
import { declareActors } from './fixtures/actors-app.ts';
import { fileLines, NODE_ARGS, remoteFailure, ROOT, startWorker, stopProcess, tempDb, track, waitFor, type RunningWorker } from '../support/process.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { engineSelection, flushRedisDb, RABBIT_URL, REDIS_DB, redisUrlForTest, type TestEngine } from '../support/services.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';

const APP = join(import.meta.dirname, 'fixtures/actors-app.ts');
const LOOKUP = join(import.meta.dirname, 'fixtures/actors-lookup.ts');
/** How long one call, or a poll, may take (a restart elsewhere waits for the 10 s lease to lapse first). */
const WAIT_MS = 60_000;
const DB = REDIS_DB.semantics;
const REDIS_URL = redisUrlForTest(DB);
const KEY = 'actors-test-signing-key-0123456789';
const OTHER = 'actors-test-key-of-someone-else-99';
const run = randomUUID().slice(0, 8);

// RabbitMQ keeps results and the name server in Redis: actors need a store every process shares (rpc:// is not).
const { unselected, redis: redisSkip, amqp: amqpSkip } = await engineSelection('ACTORS_TEST_ENGINES');
const sqlite = tempDb();
after(() => sqlite.cleanup());

interface Engine extends TestEngine {
  /** After the suite: removes what it left on the broker (the queues it used, the dead letters of `letters`). */
  cleanup(queues: string[], letters: string[]): Promise<void>;
}

const engines: Engine[] = [
  { name: 'sqlite', broker: sqlite.url, backend: sqlite.url, skip: unselected('sqlite'), prepare: async () => {}, cleanup: async () => {} },
  { name: 'redis', broker: REDIS_URL, backend: REDIS_URL, skip: redisSkip, prepare: () => flushRedisDb(DB), cleanup: () => flushRedisDb(DB) },
  {
    name: 'amqp',
    broker: RABBIT_URL,
    backend: REDIS_URL,
    skip: amqpSkip,
    prepare: () => flushRedisDb(DB),
    cleanup: async (queues, letters) => {
      await removeRabbitQueues(queues);
      for (const prefix of letters) await removeRabbitQueues([], prefix);
      await flushRedisDb(DB);
    },
  },
];

/** A promise that must settle within WAIT_MS (a hang guard for awaited proxy calls, which have no timeout). */
const settle = <T>(promise: Promise<T>, what = 'the call'): Promise<T> => within(promise, WAIT_MS, what);

/** Runs fixtures/actors-lookup.ts in a process of its own: what it printed (one JSON line), or a failure with its output. */
function lookupElsewhere(env: Record<string, string>, name: string, k: number): Promise<{ id: string; before: number; after: number }> {
  const child = track(spawn(process.execPath, [...NODE_ARGS, LOOKUP, name, String(k)], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const ended = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return within(ended, WAIT_MS, 'the second process').then(
    (code) => {
      assert.equal(code, 0, `the second process exited with ${code}:\n${stdout}${stderr}`);
      const line = stdout.split('\n').find((l) => l.startsWith('{'));
      assert.ok(line, `the second process printed no JSON line:\n${stdout}${stderr}`);
      return JSON.parse(line) as { id: string; before: number; after: number };
    },
    (error: unknown) => {
      child.kill('SIGKILL');
      throw error;
    },
  );
}

function engineSuite(engine: Engine): void {
  describe(`actors on ${engine.name}://`, { skip: engine.skip }, () => {
    const queue = `actors-${engine.name}-${run}`;
    /** Actor ids created here: their queues are removed afterwards (amqp). */
    const ids: string[] = [];
    /** Node names of the workers started here: their direct queues are removed afterwards (amqp). */
    const nodes: string[] = [];
    /** Actor ids whose dead letters this suite made (amqp: taken out of fennel.dead_letters afterwards). */
    const letters: string[] = [];
    const workers: RunningWorker[] = [];
    const apps: Fennel[] = [];
    let tmp: TempDir;
    const env = { FENNEL_RESULT_BACKEND: engine.backend, FENNEL_DEFAULT_QUEUE: queue, FENNEL_VISIBILITY_TIMEOUT_SEC: '2', FENNEL_POLL_INTERVAL_MS: '50' };
    /** Starts a host (`--actors`) named `<label>`; its node name and process. */
    const startHost = async (label: string, extra: Record<string, string> = {}): Promise<{ node: string; worker: RunningWorker }> => {
      const pattern = `actors-${engine.name}-${run}-${label}`;
      const node = `${pattern}@${hostname()}`;
      nodes.push(node);
      const worker = await startWorker(APP, engine.broker, ['-P', 'async', '-c', '4', '--actors', '-n', `${pattern}@%h`], { ...env, ...extra });
      workers.push(worker);
      return { node, worker };
    };
    /** An app of the test's own on this engine, with the fixture's actor classes. */
    const makeApp = (signingKey?: string): { app: Fennel; actors: ReturnType<typeof declareActors> } => {
      const app = new Fennel({ broker: engine.broker, backend: engine.backend, defaultQueue: queue, pollIntervalMs: 50, ...(signingKey ? { signingKey } : {}) });
      apps.push(app);
      return { app, actors: declareActors(app) };
    };
    const logOf = (id: string): string =>
      workers
        .flatMap((w) => w.lines.filter((line) => line.includes(id)).map((line) => `${w.child.pid}: ${line}`))
        .slice(-40)
        .join('\n');
    /** `promise`, failing with the workers' log lines about `id` added to its error's message (what happened to a call or actor). */
    const explained = <T>(promise: Promise<T>, id: string): Promise<T> =>
      promise.catch((error: unknown) => {
        throw new Error(`${String(error)}\nworker log lines naming ${id}:\n${logOf(id)}`, { cause: error });
      });
    /** A name unique to this run and engine; named('') is the prefix of them all. */
    const named = (what: string): string => `${engine.name}-${run}-${what}`;
    /** Which of these actors are still in the name server. */
    const listedOf = async (proxies: Array<{ id: string }>): Promise<string[]> => {
      const wanted = new Set(proxies.map((p) => p.id));
      return (await app.names.list({ prefix: named('') })).filter((e) => wanted.has(e.id)).map((e) => e.name);
    };
    /** Destroys the actor when the test ends, if the test has not (a failed test leaves nothing for the next one). */
    const disposeAfter = (t: TestContext, proxy: { id: string; name: string; destroy(): Promise<void> }): void => {
      ids.push(proxy.id);
      t.after(async () => {
        if ((await listedOf([proxy])).length) await settle(proxy.destroy(), `destroy ${proxy.name}`).catch(() => {});
      });
    };

    let app: Fennel;
    let A: ReturnType<typeof declareActors>;
    let hostA: { node: string; worker: RunningWorker };
    let hostB: { node: string; worker: RunningWorker };

    before(async () => {
      await engine.prepare();
      tmp = makeTempDir('fennel-actors-');
      ({ app, actors: A } = makeApp());
      [hostA, hostB] = await Promise.all([startHost('a'), startHost('b')]);
      // A host announces itself in the name server just after it says it is ready: wait until placement sees both.
      await waitFor(async () => (await app.names.hosts()).filter((h) => h.node === hostA.node || h.node === hostB.node).length === 2, 'both hosts in the name server', WAIT_MS);
    });
    after(async () => {
      await Promise.all(workers.map((w) => stopProcess(w)));
      for (const a of apps) await a.close();
      await engine.cleanup([...new Set([queue, ...ids.map(actorQueue), ...nodes.map((node) => `${node}.dq2`)])], letters.map(actorQueue));
      tmp?.remove();
    });

    it('create({ name, meta }): calls awaited, .async and .oneway; lookup here and from a second process; names.list; destroy', async (t) => {
      const name = named('hits');
      const c = await A.Counter.create({ name, meta: { region: 'eu', run } });
      disposeAfter(t, c);
      assert.equal(c.name, name);
      assert.equal(await settle(c.incr(5)), 5);
      const pending = c.incr.async(1);
      assert.ok(pending instanceof AsyncResult, 'incr.async gives an AsyncResult at once');
      assert.equal(await pending.get({ timeoutMs: WAIT_MS }), 6);
      assert.equal(c.incr.oneway(1), undefined, 'oneway returns nothing');
      // The oneway call was sent before this one, by the same caller: it has run when this one runs.
      assert.equal(await settle(c.get()), 7);

      const again = await A.Counter.lookup(name);
      assert.equal(again.id, c.id, 'lookup finds the same actor');
      assert.equal(await settle(again.incr(1)), 8, 'and the same instance');

      const elsewhere = await lookupElsewhere({ FENNEL_BROKER_URL: engine.broker, FENNEL_RESULT_BACKEND: engine.backend, FENNEL_DEFAULT_QUEUE: queue }, name, 10);
      assert.deepEqual(elsewhere, { id: c.id, before: 8, after: 18 }, 'a second process looks it up by name and sees the same state');
      assert.equal(await settle(c.get()), 18, 'its call changed the state this proxy sees');

      const listed = await app.names.list({ prefix: named('hit'), meta: { region: 'eu' } });
      assert.equal(listed.length, 1, JSON.stringify(listed));
      const entry = listed[0]!;
      assert.equal(entry.id, c.id);
      assert.equal(entry.name, name);
      assert.equal(entry.className, 'Counter');
      assert.equal(entry.mode, 'single');
      assert.deepEqual(entry.meta, { region: 'eu', run });
      assert.equal(entry.available, true);
      assert.equal(entry.state, 'alive');
      assert.ok([hostA.node, hostB.node].includes(entry.host), `its host ${entry.host} is one of the two`);
      assert.deepEqual(await app.names.list({ prefix: named('hit'), meta: { region: 'us' } }), [], 'a metadata filter that does not match lists nothing');
      assert.deepEqual(await app.names.list({ prefix: `nothing-${run}` }), [], 'a prefix that does not match lists nothing');

      await settle(c.destroy(), 'destroy');
      assert.deepEqual(await app.names.list({ prefix: named('hit') }), [], 'destroyed: no longer listed');
      await assert.rejects(A.Counter.lookup(name), ActorNotFoundError);
    });

    it("instance modes seen from two proxies: 'single' one instance, 'session' one per proxy (close drops it), 'percall' a fresh one per call", async (t) => {
      // single: both proxies reach one instance and one state.
      const single = await A.Counter.create({ name: named('single') });
      disposeAfter(t, single);
      const single2 = await A.Counter.lookup(single.name);
      assert.equal(await settle(single.incr(1)), 1);
      assert.equal(await settle(single2.incr(1)), 2, 'the second proxy sees the first one’s call');
      assert.equal(await settle(single.incr(1)), 3);
      assert.equal(await settle(single.who()), await settle(single2.who()), 'one instance');

      // session: each proxy its own instance, kept across its calls.
      const session = await A.SessionCounter.create({ name: named('session') });
      disposeAfter(t, session);
      const session2 = await A.SessionCounter.lookup(session.name);
      assert.equal(await settle(session.incr(1)), 1);
      assert.equal(await settle(session.incr(1)), 2);
      assert.equal(await settle(session2.incr(1)), 1, 'the second proxy has an instance of its own');
      assert.equal(await settle(session2.incr(1)), 2);
      const [who1, who1again, who2] = [await settle(session.who()), await settle(session.who()), await settle(session2.who())];
      assert.equal(who1, who1again, 'a proxy keeps its instance');
      assert.notEqual(who1, who2, 'two proxies, two instances');
      // close() drops the first proxy's instance and leaves the other's alone; a new proxy starts fresh.
      await settle(session.close(), 'close');
      assert.equal(await settle(session2.incr(1)), 3, "the other proxy's instance is kept");
      const session3 = await A.SessionCounter.lookup(session.name);
      assert.equal(await settle(session3.incr(1)), 1, 'a new proxy starts fresh');
      assert.notEqual(await settle(session3.who()), who1);
      // The closed proxy's instance is gone: called again, it gets a new one.
      assert.equal(await settle(session.incr(1)), 1, 'the closed proxy’s instance was dropped');
      assert.notEqual(await settle(session.who()), who1);

      // percall: every call a fresh instance, so state never accumulates.
      const percall = await A.PerCallCounter.create({ name: named('percall') });
      disposeAfter(t, percall);
      const percall2 = await A.PerCallCounter.lookup(percall.name);
      const values = [await settle(percall.incr(1)), await settle(percall.incr(1)), await settle(percall2.incr(1)), await settle(percall2.incr(1))];
      assert.deepEqual(values, [1, 1, 1, 1], 'no call sees another’s state');
      const whos = [await settle(percall.who()), await settle(percall.who()), await settle(percall2.who())];
      assert.equal(new Set(whos).size, 3, `three calls, three instances: ${whos.join(', ')}`);

      for (const proxy of [single, session, percall]) await settle(proxy.destroy(), 'destroy');
      assert.deepEqual(await listedOf([single, session, percall]), []);
    });

    it('1,000 concurrent incr(1) from 4 proxies on one single actor: exactly 1,000, each proxy’s values increasing in the order it sent them', async (t) => {
      const c = await A.Counter.create({ name: named('busy') });
      disposeAfter(t, c);
      const proxies = [c, ...(await Promise.all([1, 2, 3].map(() => A.Counter.lookup(c.name))))];
      const sent: Array<Array<AsyncResult<number>>> = proxies.map(() => []);
      for (let i = 0; i < 1000; i++) sent[i % 4]!.push(proxies[i % 4]!.incr.async(1));
      const values = await Promise.all(sent.map((results) => app.get(results, { timeoutMs: WAIT_MS })));
      assert.deepEqual(
        values.flat().sort((a, b) => a - b),
        Array.from({ length: 1000 }, (_, i) => i + 1),
        'every call applied once: the values are 1 … 1,000',
      );
      assert.equal(await settle(c.get()), 1000);
      // Order per caller: each proxy's calls were applied in the order it sent them.
      for (const [p, mine] of values.entries()) {
        assert.equal(mine.length, 250);
        const out = mine.findIndex((v, i) => i > 0 && v <= mine[i - 1]!);
        assert.equal(out, -1, `proxy ${p}: its call ${out} returned ${mine[out]} after ${mine[out - 1]} (values ${mine.slice(Math.max(0, out - 3), out + 3).join(', ')})`);
      }
      await settle(c.destroy(), 'destroy');
    });

    it('host A SIGKILLed with a call in flight: the actor with snapshots restarts on host B with an exact count; one created with restart: false fails with ActorDiedError', async (t) => {
      const gate = tmp.file('kill-gate');
      // Whatever happens, the held calls end with the test (registered first: runs before the actors are destroyed).
      t.after(() => writeFileSync(gate, ''));
      const savedLedger = tmp.file('saved.log');
      const mortalLedger = tmp.file('mortal.log');
      const saved = await A.SavedCounter.create({ name: named('saved'), worker: hostA.node });
      disposeAfter(t, saved);
      const mortal = await A.Counter.create({ name: named('mortal'), worker: hostA.node, restart: false });
      disposeAfter(t, mortal);
      const placed = (await app.names.list({ prefix: named('') })).filter((e) => e.id === saved.id || e.id === mortal.id);
      assert.deepEqual(placed.map((e) => [e.name, e.host, e.restarts, e.available]), [
        [mortal.name, hostA.node, 0, true],
        [saved.name, hostA.node, 0, true],
      ], `both placed on A, neither restarted; log:\n${logOf(saved.id)}\n${logOf(mortal.id)}`);

      // The stream: 100 calls; then one that holds (in flight when A dies); then, once it runs, 100 more that wait
      // behind it. Each step waits for the one before, so nothing here depends on the order of concurrent sends.
      const first = Array.from({ length: 100 }, () => saved.incr.async(1));
      const firstValues = await app.get(first, { timeoutMs: WAIT_MS });
      assert.deepEqual([...firstValues].sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i + 1));
      const held = saved.incrHeld.async(1, savedLedger, gate);
      assert.equal(await settle(mortal.incr(1)), 1);
      const mortalHeld = mortal.incrHeld.async(1, mortalLedger, gate);
      // Both held calls run on A now, and nothing can end them but the gate (made after A is dead).
      const pidA = String(hostA.worker.child.pid);
      await waitFor(() => fileLines(savedLedger).includes(pidA) && fileLines(mortalLedger).includes(pidA), 'both held calls to run on host A', WAIT_MS);
      const rest = Array.from({ length: 100 }, () => saved.incr.async(1));
      const mortalWaiting = mortal.incr.async(1);
      // In the broker (confirmed) before A dies: waiting behind the held calls, never run by A.
      await Promise.all([...rest, mortalWaiting].map((r) => r.sent));

      await stopProcess(hostA.worker, 'SIGKILL');
      writeFileSync(gate, '');

      // Every call completes once B has taken the actor over (after A's lease lapses), each applied exactly once.
      const heldValue = await explained(held.get({ timeoutMs: WAIT_MS }), saved.id);
      const restValues = await explained(app.get(rest, { timeoutMs: WAIT_MS }), saved.id);
      const after = [heldValue, ...restValues];
      assert.deepEqual(
        [...after].sort((a, b) => a - b),
        Array.from({ length: 101 }, (_, i) => i + 101),
        `each call after the first 100 applied once, from the snapshot (held call: ${heldValue}); log:\n${logOf(saved.id)}`,
      );
      assert.equal(await settle(saved.get()), 201, 'the count is exactly the number of calls');
      assert.deepEqual(fileLines(savedLedger).filter((pid) => pid !== pidA), [String(hostB.worker.child.pid)], 'the held call ran again, once, on B');

      const [listedSaved] = await app.names.list({ prefix: saved.name });
      assert.ok(listedSaved, 'still listed');
      assert.equal(listedSaved.host, hostB.node, `restarted on B; log:\n${logOf(saved.id)}`);
      assert.equal(listedSaved.restarts, 1);
      assert.equal(listedSaved.available, true);
      assert.equal(listedSaved.state, 'alive');

      // restart: false — its call in flight and the one waiting behind it fail, as does any later call.
      for (const result of [mortalHeld, mortalWaiting, mortal.incr.async(1)]) {
        const error = await remoteFailure(result, WAIT_MS);
        assert.equal(error.remoteName, 'ActorDiedError', String(error));
      }
      const [listedMortal] = await app.names.list({ prefix: mortal.name });
      assert.ok(listedMortal, 'still listed');
      assert.equal(listedMortal.state, 'dead');
      assert.equal(listedMortal.available, false);
      assert.equal(listedMortal.restarts, 0);

      await settle(saved.destroy(), 'destroy');
      await settle(mortal.destroy(), 'destroy');
      assert.deepEqual(await listedOf([saved, mortal]), []);
    });

    it('an actor placed on a busy host (its start message waits behind a full prefetch window) is not taken over meanwhile: once started, restarts 0 and alive', async (t) => {
      const gate = tmp.file('busy-gate');
      t.after(() => writeFileSync(gate, ''));
      // B holds 16 deliveries at most (4 slots × prefetch multiplier 4): 24 calls that run until the gate exists fill
      // its window, and the start messages sent after them to its own queue wait in the broker until the gate opens.
      const holds = Array.from({ length: 24 }, () => app.sendTask<boolean>('actors.hold', [gate], { worker: hostB.node }));
      await Promise.all(holds.map((h) => h.sent));
      const creating = [A.Counter.create({ name: named('placing-plain'), worker: hostB.node }), A.Counter.create({ name: named('placing-mortal'), worker: hostB.node, restart: false })];
      for (const c of creating) c.catch(() => {});
      await waitFor(async () => (await app.names.list({ prefix: named('placing-') })).length === 2, 'both entries in the name server', WAIT_MS);
      const seenAt = Date.now();
      // Two heartbeats of B after that: the takeover scan that follows the first one has seen both entries, and ended.
      const beatOfB = async (): Promise<number> => (await app.names.hosts()).find((h) => h.node === hostB.node)?.at ?? 0;
      let firstBeat = 0;
      await waitFor(async () => (firstBeat = await beatOfB()) > seenAt, "B's next heartbeat", WAIT_MS);
      await waitFor(async () => (await beatOfB()) > firstBeat, "B's heartbeat after that", WAIT_MS);
      const waiting = await app.names.list({ prefix: named('placing-') });
      ids.push(...waiting.map((e) => e.id));
      assert.deepEqual(
        waiting.map((e) => [e.name, e.host, e.restarts, e.state]),
        [
          [named('placing-mortal'), hostB.node, 0, 'alive'],
          [named('placing-plain'), hostB.node, 0, 'alive'],
        ],
        `while their start messages wait, neither is restarted nor declared dead; log:\n${waiting.map((e) => logOf(e.id)).join('\n')}`,
      );

      writeFileSync(gate, '');
      const [plain, mortal] = await Promise.all(creating);
      disposeAfter(t, plain!);
      disposeAfter(t, mortal!);
      assert.deepEqual(await app.get(holds, { timeoutMs: WAIT_MS }), holds.map(() => true));
      const started = await app.names.list({ prefix: named('placing-') });
      assert.deepEqual(started.map((e) => [e.name, e.host, e.restarts, e.state, e.available]), [
        [named('placing-mortal'), hostB.node, 0, 'alive', true],
        [named('placing-plain'), hostB.node, 0, 'alive', true],
      ]);
      assert.equal(await explained(plain!.incr.async(1).get({ timeoutMs: WAIT_MS }), plain!.id), 1);
      assert.equal(await explained(mortal!.incr.async(1).get({ timeoutMs: WAIT_MS }), mortal!.id), 1);
      await settle(plain!.destroy(), 'destroy');
      await settle(mortal!.destroy(), 'destroy');
    });

    it('signed: a signed proxy works; a call published raw to the actor queue unsigned, with another key, or changed after signing is dead-lettered and changes nothing', async (t) => {
      const signedHost = await startHost('signed', { FENNEL_SIGNING_KEY: KEY });
      const { app: signedApp, actors: S } = makeApp(KEY);
      const c = await S.Counter.create({ name: named('signed'), worker: signedHost.node });
      disposeAfter(t, c);
      letters.push(c.id);
      assert.equal(await settle(c.incr(1)), 1);
      assert.equal(await c.incr.async(1).get({ timeoutMs: WAIT_MS }), 2);

      const actorCall = (k: number, sign: (m: WireMessage) => void): { id: string; message: WireMessage } => {
        const id = randomUUID();
        const message = buildTaskMessage({ id, name: 'fennel.actor.call', args: [c.id, 'incr', [k], null], queue: actorQueue(c.id), replyTo: 'forger-reply-to' });
        sign(message);
        return { id, message };
      };
      const mine = new Signer([KEY]);
      const forged = [
        { what: 'unsigned', reason: /^SignatureError: the message is not signed$/, ...actorCall(1000, () => {}) },
        { what: 'another key', reason: /^SignatureError: it is signed with a key this worker does not hold/, ...actorCall(1000, (m) => new Signer([OTHER]).sign(m)) },
        {
          what: 'a tampered body',
          reason: /^SignatureError: its signature does not match its body and headers/,
          ...actorCall(1000, (m) => {
            mine.sign(m);
            assert.ok(m.body.includes('[1000]'));
            m.body = m.body.replace('[1000]', '[1001]');
          }),
        },
        {
          what: 'a tampered eta',
          reason: /^SignatureError: its signature does not match its body and headers/,
          ...actorCall(1000, (m) => {
            mine.sign(m);
            m.headers['eta'] = new Date(Date.now() - 1000).toISOString();
          }),
        },
      ];
      for (const f of forged) await signedApp.transport.publish(f.message, { queue: actorQueue(c.id) });
      // The same raw call, signed with the key and left alone, runs: the others are refused for their signatures only.
      const genuine = actorCall(1000, (m) => mine.sign(m));
      await signedApp.transport.publish(genuine.message, { queue: actorQueue(c.id) });
      assert.equal(await signedApp.asyncResult<number>(genuine.id).get({ timeoutMs: WAIT_MS }), 1002, 'a raw call signed with the key runs');

      const letterOf = async (id: string) => (await signedApp.transport.listDeadLetters({ limit: 10_000 })).find((d) => d.taskId === id);
      await waitFor(async () => (await Promise.all(forged.map((f) => letterOf(f.id)))).every(Boolean), 'the four forged calls to reach the dead letters', WAIT_MS);
      for (const f of forged) {
        const letter = (await letterOf(f.id))!;
        assert.ok(letter.reason.startsWith('SignatureError:'), `${f.what}: ${letter.reason}`);
        assert.match(letter.reason, f.reason, f.what);
        assert.equal(letter.queue, actorQueue(c.id), f.what);
        assert.equal(await signedApp.backend.get(f.id), undefined, `${f.what}: nothing is stored under its id`);
      }
      assert.equal(await settle(c.get()), 1002, 'no forged call changed the count');
      assert.equal(await settle(c.incr(1)), 1003, 'and the actor keeps serving signed calls');
      await settle(c.destroy(), 'destroy');
    });
  });
}

for (const engine of engines) engineSuite(engine);
