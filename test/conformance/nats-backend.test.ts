// Runs the backend conformance suite against the nats:// result backend, on the shared NATS server
// (127.0.0.1:4222, JetStream) with a prefix owned by this file: its buckets are conformance_b_results and
// conformance_b_state. Every factory call starts from empty buckets (deleted, as redis.test.ts flushes its
// database); `peer` and `expiring` open other instances on the same buckets, each on its own connection, so what
// one stores reaches another through JetStream itself (its KV watches).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { NatsBackend } from '../../src/backends/nats.ts';
import { NatsLink } from '../../src/clients/nats/connection.ts';
import { destroyBucket, fromKeyToken, keyToken } from '../../src/clients/nats/kv.ts';
import { RetentionPolicy } from '../../src/clients/nats/jetstream.ts';
import { BrokerUnavailableError, ConfigError, ProtocolError } from '../../src/errors.ts';
import { States } from '../../src/protocol/states.ts';
import { natsSkipReason, natsUrlForTest } from '../support/nats.ts';
import { backendSuite } from './backend.suite.ts';
import { waitFor } from './helpers/wait.ts';

const PREFIX = 'conformance_b';
const URL = natsUrlForTest(PREFIX);
const skip = await natsSkipReason();

/** Deletes this file's buckets. */
async function destroyBuckets(): Promise<void> {
  const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'fennel test cleanup' });
  try {
    const handles = await link.handles();
    for (const name of ['results', 'state']) await destroyBucket(handles, `${PREFIX}_${name}`);
  } finally {
    await link.close();
  }
}

describe('nats:// result backend', { skip }, () => {
  before(destroyBuckets);
  after(destroyBuckets);

  backendSuite(
    'nats',
    async () => {
      await destroyBuckets();
      return new NatsBackend(URL);
    },
    {
      peer: (backend) => new NatsBackend(backend.url),
      expiring: (backend, resultExpiresSec) => new NatsBackend(backend.url, { resultExpiresSec }),
      crossProcess: true,
    },
  );

  // Engine-specific.
  it('key tokens: any text maps to a KV-legal token and back, and two texts never share one', () => {
    const texts = ['', '=', '.', 'a.b', 'a=2Eb', 'é', '✓ spaces / and * > ..', randomUUID(), 'A-Z_a-z-0-9', '=3D'];
    const tokens = texts.map(keyToken);
    for (const [i, token] of tokens.entries()) {
      assert.match(token, /^[-_=a-zA-Z0-9]+$/, `token of ${JSON.stringify(texts[i])}`);
      assert.equal(fromKeyToken(token), texts[i]);
    }
    assert.equal(new Set(tokens).size, texts.length);
  });

  it('a value that is not a meta under a result key is a ProtocolError for get() and for its waiters, not a hang', async () => {
    await destroyBuckets();
    const backend = new NatsBackend(URL);
    const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'fennel test writer' });
    try {
      const id = randomUUID();
      // Observed at once: the rejection may come before the assertion below is reached.
      const waiting = backend.wait(id, { timeoutMs: 20_000 }).then(
        () => assert.fail('the wait resolved'),
        (error: unknown) => error,
      );
      await backend.store({ status: States.STARTED, result: null, traceback: null, children: [], date_done: null, task_id: id });
      const kv = await (await link.handles()).kvm.open(`${PREFIX}_results`);
      await kv.put(`meta.${id}`, 'not json {');
      assert.ok((await waiting) instanceof ProtocolError, 'the waiter is told the value is not a meta');
      await assert.rejects(backend.get(id), ProtocolError);
    } finally {
      await link.close();
      await backend.close();
    }
  });

  it('waits share one watch: 50 waits make one consumer on the server, deleted when the backend closes (not left to lapse in 5 minutes)', async () => {
    await destroyBuckets();
    const backend = new NatsBackend(URL);
    const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'fennel test inspector' });
    try {
      // 0 until the bucket exists (the backend makes it on first use).
      const consumers = async (): Promise<number> =>
        (await (await link.handles()).jsm.streams.info(`KV_${PREFIX}_results`).catch(() => undefined))?.state.consumer_count ?? 0;
      const ids = Array.from({ length: 50 }, () => randomUUID());
      const waits = ids.map((id) => backend.wait(id, { timeoutMs: 20_000 }));
      const timedOut = backend.wait(randomUUID(), { timeoutMs: 300 });
      await waitFor(async () => (await consumers()) > 0, { timeoutMs: 10_000, what: 'the watch to be up' });
      assert.equal(await consumers(), 1, 'one watch for every wait');
      for (const id of ids) await backend.store({ status: States.SUCCESS, result: id, traceback: null, children: [], date_done: null, task_id: id });
      assert.deepEqual(await Promise.all(waits.map(async (w) => (await w)?.result)), ids, 'each wait woken by its own result');
      assert.equal(await timedOut, undefined);
      await backend.close();
      await waitFor(async () => (await consumers()) === 0, { timeoutMs: 10_000, what: 'the watch’s consumer to be deleted' });
    } finally {
      await link.close();
      await backend.close();
    }
  });

  it('a sent id (expectResult) waits without a read, and still gets a result that the watch delivered before the wait began', async () => {
    await destroyBuckets();
    const backend = new NatsBackend(URL);
    const peer = new NatsBackend(URL);
    const meta = (id: string) => ({ status: States.SUCCESS, result: id, traceback: null, children: [], date_done: null, task_id: id });
    try {
      const noWatch = randomUUID();
      backend.expectResult(noWatch); // no watch yet: nothing is remembered, its wait reads
      await peer.store(meta(noWatch));
      assert.equal((await backend.wait(noWatch, { timeoutMs: 10_000 }))?.result, noWatch, 'stored before the watch: read');
      // The watch is up now (that wait started it). A sent id stored by another process after the wait began arrives by the watch…
      const later = randomUUID();
      backend.expectResult(later);
      const waiting = backend.wait(later, { timeoutMs: 10_000 });
      await peer.store(meta(later));
      assert.equal((await waiting)?.result, later);
      // …and one stored before its wait began (delivered by the watch to nobody) is read: the watch's entry took it off the list.
      const early = randomUUID();
      backend.expectResult(early);
      await peer.store(meta(early));
      const probe = randomUUID(); // stored after `early`: once its wait is woken, the watch has passed `early` too
      const probing = backend.wait(probe, { timeoutMs: 10_000 });
      await peer.store(meta(probe));
      await probing;
      assert.equal((await backend.wait(early, { timeoutMs: 10_000 }))?.result, early, 'not lost: read, since the watch saw it first');
    } finally {
      await Promise.all([backend.close(), peer.close()]);
    }
  });

  it('the calls parked on a task follow its meta, are released by its outcome, and are not part of what get() returns', async () => {
    await destroyBuckets();
    const backend = new NatsBackend(URL);
    const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'fennel test inspector' });
    try {
      const input = randomUUID();
      const call = randomUUID();
      assert.deepEqual(await backend.park(call, [input], JSON.stringify({ call })), { ready: false });
      const raw = async () => (await (await link.handles()).kvm.open(`${PREFIX}_results`)).get(`meta.${input}`).then((e) => e?.string());
      const held = await raw();
      assert.match(held ?? '', /^\{"status":"PENDING".*\}\n\["[^"]+"\]$/, 'a PENDING meta holds the parked id');
      assert.equal((await backend.get(input))?.status, States.PENDING);
      assert.deepEqual(await backend.countByState(), {}, 'the holder is not counted as a result');
      const released = await backend.settle({ status: States.SUCCESS, result: 7, traceback: null, children: [], date_done: null, task_id: input });
      assert.deepEqual(released.map((r) => r.taskId), [call]);
      const stored = await backend.get(input);
      assert.equal(stored?.result, 7);
      assert.equal(Object.keys(stored).some((k) => k.includes('dependents')), false);
      assert.deepEqual(await backend.countByState(), { SUCCESS: 1 });
    } finally {
      await link.close();
      await backend.close();
    }
  });

  it('refuses a results bucket that is not one Fennel can use (a work-queue stream under its name) with a ConfigError naming it and the setting', async () => {
    await destroyBuckets();
    const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'fennel test foreign bucket' });
    const backend = new NatsBackend(URL);
    try {
      const { jsm } = await link.handles();
      await jsm.streams.add({ name: `KV_${PREFIX}_results`, subjects: [`$KV.${PREFIX}_results.>`], retention: RetentionPolicy.Workqueue });
      const refused = await backend.get(randomUUID()).catch((error: unknown) => error);
      assert.ok(refused instanceof ConfigError, `a ConfigError: ${String(refused)}`);
      assert.match(refused.message, new RegExp(`bucket ${PREFIX}_results \\(stream KV_${PREFIX}_results\\).*retention is 'workqueue'`));
      assert.equal((await jsm.streams.info(`KV_${PREFIX}_results`)).config.retention, 'workqueue', 'left as it was');
    } finally {
      await backend.close();
      await link.close();
      await destroyBuckets();
    }
  });

  it('a server that does not answer is a BrokerUnavailableError within connectTimeoutMs, for a call and for a wait', async () => {
    const backend = new NatsBackend('nats://127.0.0.1:1?prefix=conformance_b', { connectTimeoutMs: 500 });
    try {
      const started = Date.now();
      await assert.rejects(backend.get(randomUUID()), BrokerUnavailableError);
      await assert.rejects(backend.wait(randomUUID(), { timeoutMs: 30_000 }), BrokerUnavailableError);
      assert.ok(Date.now() - started < 10_000, `failed within the bound (${Date.now() - started} ms)`);
    } finally {
      await backend.close();
    }
  });
});
