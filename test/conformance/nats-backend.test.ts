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
import { BrokerUnavailableError, ProtocolError } from '../../src/errors.ts';
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
