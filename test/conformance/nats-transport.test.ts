// Runs the transport conformance suite against the nats:// engine on the shared NATS server (127.0.0.1:4222,
// JetStream), under the prefix `conformance_t`, owned by this file. Every factory call starts from an empty broker:
// the prefix's streams (CONFORMANCE_T_TASKS, CONFORMANCE_T_DEAD) and key-value buckets are deleted first, and again
// when the file ends. `reopen` opens a second transport on its own connection; the suite's child processes reach the
// same streams through the URL.
//
// Capabilities: no priorities (JetStream hands out in stream order), no broadcast (not built on NATS yet); delayed
// delivery through the scheduler consumer, deduplication through per-subject expected sequences and the dedupe bucket.
// Presence: workers announce themselves in the bucket conformance_t_consumers.
// Then the engine's own cases: the names the encoding must escape, a payload that is not an envelope, a server that
// is not there.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { NatsLink } from '../../src/clients/nats/connection.ts';
import { subjectToken } from '../../src/clients/nats/core.ts';
import { AckPolicy, pullNoWait, tokenText } from '../../src/clients/nats/jetstream.ts';
import { BrokerUnavailableError, ConfigError } from '../../src/errors.ts';
import { buildTaskMessage } from '../../src/protocol/message.ts';
import { NatsTransport } from '../../src/transports/nats.ts';
import type { Delivery } from '../../src/transports/transport.ts';
import { natsSkipReason, natsUrlForTest } from '../support/nats.ts';
import { sleep, waitFor } from './helpers/wait.ts';
import { transportSuite, type TransportOpenOptions } from './transport.suite.ts';

const PREFIX = 'conformance_t';
const URL = natsUrlForTest(PREFIX);
const POLL_MS = 100;
const skip = await natsSkipReason();

/** Deletes every stream of this file's prefix (the task and dead-letter streams, and the buckets' KV_ streams). */
async function removeStreams(): Promise<void> {
  const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'conformance-cleanup' });
  try {
    const { jsm } = await link.handles();
    const names: string[] = [];
    for await (const name of jsm.streams.names()) names.push(name);
    const mine = names.filter((n) => n.startsWith(`${PREFIX.toUpperCase()}_`) || n.startsWith(`KV_${PREFIX}_`));
    await Promise.all(mine.map((n) => jsm.streams.delete(n)));
  } finally {
    await link.close();
  }
}

function openTransport(url: string, opts: TransportOpenOptions): NatsTransport {
  return new NatsTransport(url, { visibilityTimeoutSec: opts.visibilityTimeoutSec, pollIntervalMs: POLL_MS });
}

describe('nats:// transport', { skip }, () => {
  before(removeStreams);
  after(removeStreams);

  transportSuite(
    'nats',
    async (opts) => {
      await removeStreams();
      return openTransport(URL, opts);
    },
    { delayedDelivery: true, priorities: false, crossProcess: true, deduplication: true, broadcast: false },
    { reopen: (transport, opts) => openTransport(transport.url, opts), presence: 'announced' },
  );

  describe('nats:// engine', () => {
    it('encodes queue names injectively into one subject token and reads them back', () => {
      const names = ['celery', 'a.b', 'a_2eb', 'a*b', 'a>b', 'a b', '', '_', '__', 'fennel.1234@host.dq2', 'é✓🚀', 'Q', 'q'];
      const tokens = names.map(subjectToken);
      assert.equal(new Set(tokens).size, names.length, 'no two names share a token');
      for (const token of tokens) assert.match(token, /^[A-Za-z0-9_-]+$/);
      assert.deepEqual(tokens.map(tokenText), names);
      assert.equal(tokenText('_scheduler'), undefined, 'the scheduler consumer is no queue');
    });

    it('carries queues whose names a subject cannot hold, each to its own consumer', async () => {
      await removeStreams();
      const t = openTransport(URL, { visibilityTimeoutSec: 30 });
      try {
        const queues = [`x.${randomUUID()}`, `x*${randomUUID()}`, `x>${randomUUID()} y`];
        const expected = new Map<string, string>();
        for (const queue of queues) {
          const id = randomUUID();
          expected.set(id, queue);
          await t.publish(buildTaskMessage({ id, name: 'tests.echo', args: [queue], queue }), { queue });
        }
        const got: Delivery[] = [];
        const sub = await t.consume({ queues, prefetch: 10 }, (d) => got.push(d));
        await waitFor(() => got.length === 3, { what: 'three deliveries' });
        assert.deepEqual(new Map(got.map((d) => [String(d.message.headers['id']), d.queue])), expected);
        for (const d of got) await d.ack();
        assert.deepEqual((await t.stats()).map((s) => s.queue).sort(), [...queues].sort());
        await sub.cancel();
      } finally {
        await t.close();
      }
    });

    it('refuses a queue name too long for a consumer name with a ConfigError', async () => {
      const t = openTransport(URL, { visibilityTimeoutSec: 30 });
      try {
        const queue = '✓'.repeat(60);
        await assert.rejects(t.publish(buildTaskMessage({ id: randomUUID(), name: 'tests.echo', args: [], queue }), { queue }), ConfigError);
        await assert.rejects(t.consume({ queues: [queue], prefetch: 1 }, () => {}), ConfigError);
      } finally {
        await t.close();
      }
    });

    it('hands out a payload that is not an envelope marked malformed, and dead-letters it with its reason', async () => {
      await removeStreams();
      const t = openTransport(URL, { visibilityTimeoutSec: 30 });
      const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'conformance-raw' });
      try {
        const queue = `raw-${randomUUID()}`;
        const got: Delivery[] = [];
        const sub = await t.consume({ queues: [queue], prefetch: 1 }, (d) => got.push(d));
        const { js } = await link.handles();
        await js.publish(t.layout.subject('q', queue), 'not json at all');
        await waitFor(() => got.length === 1, { what: 'the malformed delivery' });
        assert.ok(got[0]!.message.malformed, 'marked malformed');
        await got[0]!.reject({ requeue: false, reason: 'ProtocolError: not an envelope' });
        const letters = (await t.listDeadLetters()).filter((l) => l.queue === queue);
        assert.equal(letters.length, 1);
        assert.equal(letters[0]!.reason, 'ProtocolError: not an envelope');
        assert.equal(await t.depth(queue), 0);
        await sub.cancel();
      } finally {
        await link.close();
        await t.close();
      }
    });

    it('fails a publish to a server that is not there with BrokerUnavailableError within the connect timeout', async () => {
      const t = new NatsTransport('nats://127.0.0.1:1?prefix=conformance_t', { connectTimeoutMs: 500 });
      try {
        const started = Date.now();
        await assert.rejects(t.publish(buildTaskMessage({ id: randomUUID(), name: 'tests.echo', args: [], queue: 'q' }), { queue: 'q' }), BrokerUnavailableError);
        assert.ok(Date.now() - started < 5_000);
      } finally {
        await t.close();
      }
    });

    it('an idle consumer costs no requests: it waits on the wake subject, and a publish is seen at once', async () => {
      await removeStreams();
      const t = new NatsTransport(URL, { visibilityTimeoutSec: 30, pollIntervalMs: 60_000 });
      const producer = openTransport(URL, { visibilityTimeoutSec: 30 });
      try {
        const queue = `idle-${randomUUID()}`;
        const got: number[] = [];
        const sub = await t.consume({ queues: [queue], prefetch: 1 }, () => got.push(Date.now()));
        await sleep(300);
        const sent = Date.now();
        await producer.publish(buildTaskMessage({ id: randomUUID(), name: 'tests.echo', args: [], queue }), { queue });
        await waitFor(() => got.length === 1, { what: 'the delivery', timeoutMs: 5_000 });
        assert.ok(got[0]! - sent < 1_000, `seen ${got[0]! - sent} ms after the publish, with a 60 s poll`);
        await sub.cancel();
      } finally {
        await producer.close();
        await t.close();
      }
    });

    it('purges through the queue consumer, so that it counts the purged messages gone and its next empty pull is answered', async () => {
      await removeStreams();
      const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'conformance-purge' });
      const t = openTransport(URL, { visibilityTimeoutSec: 30 });
      const queue = `purge-${randomUUID()}`;
      const send = (): Promise<void> => t.publish(buildTaskMessage({ id: randomUUID(), name: 'tests.echo', args: [], queue }), { queue });
      try {
        // The consumer exists (a worker consumed), and three messages wait, never handed out.
        const got: Delivery[] = [];
        const sub = await t.consume({ queues: [queue], prefetch: 1 }, (d) => got.push(d));
        await send();
        await waitFor(() => got.length === 1, { what: 'the first delivery' });
        await got[0]!.ack();
        await sub.cancel();
        for (let i = 0; i < 3; i++) await send();
        assert.equal(await t.purge(queue), 3);
        // A stream purge of the queue's subjects left the consumer counting 3 pending: this pull was then queued (not
        // refused with 404 No Messages), found nothing to serve it, and was never answered.
        const { nc } = await link.handles();
        assert.deepEqual(await pullNoWait(nc, `${PREFIX.toUpperCase()}_TASKS`, subjectToken(queue), 1, 5_000), []);
        // And the queue works on: a message sent now is handed out.
        await send();
        const again = await t.consume({ queues: [queue], prefetch: 1 }, (d) => got.push(d));
        await waitFor(() => got.length === 2, { what: 'the delivery after the purge' });
        await got[1]!.ack();
        await again.cancel();
      } finally {
        await t.close();
        await link.close();
      }
    });

    it('a queue consumer lapses after a day idle (inactive_threshold); one deleted under a running worker is made again and hands out what waits', async () => {
      await removeStreams();
      const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'conformance-lapse' });
      const t = openTransport(URL, { visibilityTimeoutSec: 30 });
      const queue = `lapse-${randomUUID()}`;
      const got: string[] = [];
      try {
        const { jsm } = await link.handles();
        const sub = await t.consume({ queues: [queue], prefetch: 10 }, (d) => {
          got.push(d.message.headers['id'] as string);
          void d.ack();
        });
        const send = async (): Promise<string> => {
          const id = randomUUID();
          await t.publish(buildTaskMessage({ id, name: 'tests.echo', args: [], queue }), { queue });
          return id;
        };
        const first = await send();
        await waitFor(() => got.length === 1, { what: 'the first delivery', timeoutMs: 10_000 });
        const tasks = `${PREFIX.toUpperCase()}_TASKS`;
        assert.equal((await jsm.consumers.info(tasks, subjectToken(queue))).config.inactive_threshold, 86_400 * 1e9);
        // As the server does once the threshold passes (no worker pulled for a day).
        await jsm.consumers.delete(tasks, subjectToken(queue));
        const later = [await send(), await send()];
        await waitFor(() => got.length === 3, { what: 'the deliveries after the consumer was deleted', timeoutMs: 15_000 });
        assert.deepEqual(got, [first, ...later]);
        await sub.cancel();
      } finally {
        await t.close();
        await link.close();
      }
    });

    it('refuses, with a ConfigError naming it and the setting, a task stream or queue consumer that someone else made unfit, and changes neither', async () => {
      const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'conformance-foreign' });
      const queue = `foreign-${randomUUID()}`;
      const message = buildTaskMessage({ id: randomUUID(), name: 'tests.echo', args: [], queue });
      try {
        const { jsm } = await link.handles();
        // The task stream's name and subjects, but limits retention: acked messages would never be deleted.
        await removeStreams();
        const tasks = `${PREFIX.toUpperCase()}_TASKS`;
        await jsm.streams.add({ name: tasks, subjects: [`${PREFIX}.q.>`, `${PREFIX}.s.>`] });
        const t = openTransport(URL, { visibilityTimeoutSec: 30 });
        const refused = await t.publish(message, { queue }).catch((error: unknown) => error);
        await t.close();
        assert.ok(refused instanceof ConfigError, `a ConfigError: ${String(refused)}`);
        assert.match(refused.message, new RegExp(`${tasks}.*retention is 'limits'.*'workqueue'`));
        assert.equal((await jsm.streams.info(tasks)).config.retention, 'limits', 'left as it was');
        // A fit stream, and the queue's consumer made by hand to give up after 3 deliveries (no dead letter then).
        await removeStreams();
        const ok = openTransport(URL, { visibilityTimeoutSec: 30 });
        await ok.publish(message, { queue });
        await ok.close();
        const consumer = subjectToken(queue);
        await jsm.consumers.add(tasks, { durable_name: consumer, ack_policy: AckPolicy.Explicit, max_deliver: 3, filter_subject: `${PREFIX}.q.${consumer}.>` });
        const worker = openTransport(URL, { visibilityTimeoutSec: 30 });
        const notConsumed = await worker.consume({ queues: [queue], prefetch: 1 }, () => {}).catch((error: unknown) => error);
        await worker.close();
        assert.ok(notConsumed instanceof ConfigError, `a ConfigError: ${String(notConsumed)}`);
        assert.match(notConsumed.message, new RegExp(`consumer ${consumer} of stream ${tasks}.*max_deliver is 3`));
        assert.equal((await jsm.consumers.info(tasks, consumer)).num_pending, 1, 'the message is still there');
      } finally {
        await link.close();
        await removeStreams();
      }
    });
  });
});
