// The nats:// consumer's steps (src/transports/nats/store.ts) on the shared NATS server, with a stream and consumer of
// the test's own: how an ack is sent. A plain message's "+ACK" is published without waiting for the server (as AMQP's
// basic.ack); a deduplicated one's is a request, so that its id is free once ack() resolves. Which is which comes
// from the message's subject, whatever the task id: an id "m" makes the subject p.q.<queue>.d.m, which ends as the
// plain subject p.q.<queue>.m does.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { NatsLink, type NatsHandles } from '../../../src/clients/nats/connection.ts';
import { AckPolicy, getStored, publishStored, RetentionPolicy } from '../../../src/clients/nats/jetstream.ts';
import { Replies } from '../../../src/clients/nats/requests.ts';
import { encodeEnvelope } from '../../../src/protocol/envelope.ts';
import { buildTaskMessage } from '../../../src/protocol/message.ts';
import { NatsQueueStore, type StoreHost } from '../../../src/transports/nats/store.ts';
import { natsSkipReason, natsUrlForTest } from '../../support/nats.ts';

const URL = natsUrlForTest('unit_store');
const skip = await natsSkipReason();
const STREAM = `UNIT_STORE_${randomUUID().slice(0, 8)}`;
const P = STREAM.toLowerCase();
const QUEUE = 'q';
const CONSUMER = 'q';
const TIMEOUT_MS = 5_000;

describe('nats:// store: how an ack is sent', { skip }, () => {
  let link: NatsLink;
  let handles: NatsHandles;
  /** The reply subjects acked by request, and those published to (fire and forget), through the store's connection. */
  const requested: string[] = [];
  const published: string[] = [];
  let replies: Replies;

  before(async () => {
    link = new NatsLink(URL, { connectTimeoutMs: TIMEOUT_MS, name: 'fennel unit store' });
    handles = await link.handles();
    await handles.jsm.streams.add({ name: STREAM, subjects: [`${P}.q.>`], retention: RetentionPolicy.Workqueue });
    await handles.jsm.consumers.add(STREAM, { durable_name: CONSUMER, ack_policy: AckPolicy.Explicit, filter_subject: `${P}.q.${QUEUE}.>` });
    // The store's connection (the test's own), watched: its requests and its plain publishes to $JS.ACK subjects are recorded.
    const nc = handles.nc;
    const publish = nc.publish.bind(nc);
    nc.publish = (subject, payload, options) => {
      if (subject.startsWith('$JS.ACK.') && !options?.reply) published.push(subject);
      publish(subject, payload, options);
    };
    replies = new Replies(nc);
    const request = replies.request.bind(replies);
    replies.request = (subject, payload, timeoutMs, msgHeaders) => {
      if (subject.startsWith('$JS.ACK.')) requested.push(subject);
      return request(subject, payload, timeoutMs, msgHeaders);
    };
  });
  after(async () => {
    await handles.jsm.streams.delete(STREAM).catch(() => false);
    await link.close();
  });

  function host(): StoreHost {
    return {
      timeoutMs: TIMEOUT_MS,
      stream: STREAM,
      connection: () => Promise.resolve(replies),
      consumerName: () => CONSUMER,
      plainSubject: (queue) => `${P}.q.${queue}.m`,
      ensureConsumers: (queues) => Promise.resolve(queues.map(() => 30_000)),
      recreateConsumer: () => Promise.reject(new Error('not in this test')),
      consumerExists: () => Promise.resolve(true),
      deadLetter: () => Promise.reject(new Error('not in this test')),
      wake: () => {},
      onWake: () => Promise.resolve(() => {}),
    };
  }

  it('acks a plain message without waiting, and a deduplicated one (even with the id "m") by request, deleted when ack() resolves', async () => {
    const plain = `${P}.q.${QUEUE}.m`;
    const deduplicated = `${P}.q.${QUEUE}.d.m`;
    for (const subject of [plain, deduplicated]) {
      const message = buildTaskMessage({ name: 'tests.echo', args: [1], id: subject.endsWith('d.m') ? 'm' : randomUUID(), queue: QUEUE });
      await publishStored(replies, subject, encodeEnvelope(message, 'utf-8'), TIMEOUT_MS);
    }
    const store = new NatsQueueStore(host(), [QUEUE]);
    try {
      const { claimed } = await store.claim(10);
      assert.equal(claimed.length, 2);
      const [first, second] = claimed.map((c) => c.handle);
      assert.deepEqual([first!.deduplicated, second!.deduplicated], [false, true]);

      await store.ack(first!);
      assert.deepEqual(published, [first!.reply], 'the plain ack is a publish');
      assert.deepEqual(requested, [], 'the plain ack is not a request');

      await store.ack(second!);
      assert.deepEqual(requested, [second!.reply], 'the deduplicated ack is a request');
      assert.equal(await getStored(replies, STREAM, { last_by_subj: deduplicated }, TIMEOUT_MS), null, 'deleted once ack() resolved');
    } finally {
      store.stop();
    }
  });
});
