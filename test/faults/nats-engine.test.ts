// The nats:// transport under the two faults the fault suite and the cluster run found, each on a private nats-server
// (a store in a temp dir, a free port) this file starts, SIGKILLs and stops:
//   - counts after a SIGKILL: nats-server 2.9 writes a block's deletes lazily, and can come back with messages that
//     were acked (deleted) before it died while the consumer's state, written sooner, is past them. Such messages
//     are never handed out again; `depth` and `stats` must count what the consumer will hand out, not them.
//   - a publish while the stream has no leader (as during a cluster's election, here: the stream deleted and made
//     again): "no responders" means nobody received it, so the producer sends it again within connectTimeoutMs;
//     past that it fails with BrokerUnavailableError saying so, never "jetstream is not enabled" at once.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { NatsLink } from '../../src/clients/nats/connection.ts';
import { pullNoWait, settle } from '../../src/clients/nats/jetstream.ts';
import { BrokerUnavailableError } from '../../src/errors.ts';
import { buildTaskMessage } from '../../src/protocol/message.ts';
import { NatsTransport } from '../../src/transports/nats.ts';
import type { Delivery } from '../../src/transports/transport.ts';
import { natsServerSkipReason, startNats, type PrivateNats } from '../support/nats.ts';
import { freePort } from '../support/services.ts';
import { waitFor } from '../support/process.ts';
import { makeTempDir } from '../support/tmp.ts';

const skip = natsServerSkipReason();
const dir = makeTempDir('fennel-nats-engine-');
const QUEUE = 'engine';

function message(n: number): ReturnType<typeof buildTaskMessage> {
  return buildTaskMessage({ id: randomUUID(), name: 'engine.task', args: [n], queue: QUEUE });
}

describe('nats:// transport on a private nats-server', { skip }, () => {
  const servers: PrivateNats[] = [];
  const open: Array<{ close(): Promise<void> }> = [];
  const privateServer = async (store: string): Promise<PrivateNats> => {
    const server = await startNats({ storeDir: dir.file(store) });
    servers.push(server);
    return server;
  };
  after(async () => {
    await Promise.all(open.map((o) => o.close().catch(() => {})));
    await Promise.all(servers.map((s) => s.stop()));
    dir.remove();
  });

  it('counts, after the server was SIGKILLed and restarted, exactly what the consumer hands out', async () => {
    const server = await privateServer('counts');
    const url = `${server.url}?prefix=counts`;
    const first = new NatsTransport(url, { visibilityTimeoutSec: 1, pollIntervalMs: 100 });
    open.push(first);
    await first.publishMany(Array.from({ length: 400 }, (_, i) => [message(i), { queue: QUEUE }] as const));
    // One delivery held and never settled (the acks below are then deletions inside the stream, not at its head)…
    const held: Delivery[] = [];
    const sub = await first.consume({ queues: [QUEUE], prefetch: 1 }, (d) => held.push(d));
    await waitFor(() => held.length === 1, 'the first delivery');
    await sub.cancel();
    // …then the next 200 taken and acked through the queue's consumer.
    const link = new NatsLink(url, { connectTimeoutMs: 5_000, name: 'engine-test' });
    open.push(link);
    const { replies } = await link.handles();
    let acked = 0;
    while (acked < 200) {
      const msgs = await pullNoWait(replies.nc, first.layout.tasks, first.layout.consumer(QUEUE), 200 - acked, 5_000);
      await Promise.all(msgs.map((m) => settle(replies, m.reply!, '+ACK', 5_000)));
      acked += msgs.length;
    }
    assert.equal(await first.depth(QUEUE), 199);
    await first.close(); // hands the held one back (-NAK): no renewals keep it from the next consumer
    await new Promise((resolve) => setTimeout(resolve, 500)); // the consumer's state is written; the deletes may not be
    await server.kill('SIGKILL');
    await server.restart();

    const second = new NatsTransport(url, { visibilityTimeoutSec: 1, pollIntervalMs: 100 });
    open.push(second);
    const depth = await second.depth(QUEUE);
    const row = (await second.stats()).find((s) => s.queue === QUEUE);
    const later = new NatsLink(url, { connectTimeoutMs: 5_000, name: 'engine-test-after' });
    open.push(later);
    const streamHolds = (await (await later.handles()).jsm.streams.info(second.layout.tasks)).state.messages;
    // What comes out: every message the consumer still hands out (the held one once its ack wait lapses).
    const ids = new Set<string>();
    const sub2 = await second.consume({ queues: [QUEUE], prefetch: 50 }, (d) => {
      ids.add(String(d.message.headers['id']));
      void d.ack();
    });
    const expected = depth + (row?.unacked ?? 0);
    await waitFor(() => ids.size >= expected, `${expected} deliveries (depth ${depth} + unacked ${row?.unacked})`, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 2_500)); // longer than the ack wait: nothing more comes
    await sub2.cancel();
    assert.equal(row?.ready, depth, 'stats and depth agree');
    assert.equal(ids.size, expected, `depth ${depth} + unacked ${row?.unacked} is what was handed out (the stream held ${streamHolds})`);
    assert.equal(await second.depth(QUEUE), 0, 'nothing is left to count once all was handed out and acked');
  });

  it('a worker consuming before its server answers starts anyway, goes live once it does, and takes what waits', async () => {
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}?prefix=late`;
    const worker = new NatsTransport(url, { connectTimeoutMs: 1_000, pollIntervalMs: 100 });
    open.push(worker);
    const got: Delivery[] = [];
    // Nobody on the port: consume() does not fail (a cluster that is away or slow to make the consumer is the same case).
    const sub = await worker.consume({ queues: [QUEUE], prefetch: 10 }, (d) => {
      got.push(d);
      void d.ack();
    });
    let live = false;
    assert.ok(sub.live, 'the subscription says when it is live');
    void sub.live.then(() => (live = true));
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal(live, false, 'not live while nothing answers');
    servers.push(await startNats({ storeDir: dir.file('late'), port }));
    const producer = new NatsTransport(url, { connectTimeoutMs: 5_000 });
    open.push(producer);
    const sent = message(7);
    await producer.publish(sent, { queue: QUEUE });
    await waitFor(() => got.length === 1, 'the delivery once the server answers', 30_000);
    assert.equal(live, true);
    assert.equal(got[0]!.message.headers['id'], sent.headers['id']);
    await sub.cancel();
  });

  it('sends a publish again while its stream has no leader, and fails it within the bound, saying so', async () => {
    const server = await privateServer('leaderless');
    const url = `${server.url}?prefix=leaderless`;
    const transport = new NatsTransport(url, { connectTimeoutMs: 2_000, pollIntervalMs: 100 });
    open.push(transport);
    await transport.publish(message(0), { queue: QUEUE }); // makes the streams
    const link = new NatsLink(url, { connectTimeoutMs: 5_000, name: 'engine-test' });
    open.push(link);
    const { jsm } = await link.handles();
    const config = (await jsm.streams.info(transport.layout.tasks)).config;

    // No stream takes the subject for 500 ms (as while a cluster elects the stream's leader): the publish waits.
    await jsm.streams.delete(transport.layout.tasks);
    const sent = transport.publish(message(1), { queue: QUEUE });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await jsm.streams.add(config);
    await sent;
    assert.equal((await jsm.streams.info(transport.layout.tasks)).state.messages, 1, 'stored once');

    // For longer than connectTimeoutMs: BrokerUnavailableError naming the cause, after the bound, not at once.
    await jsm.streams.delete(transport.layout.tasks);
    const started = Date.now();
    const error = await transport.publish(message(2), { queue: QUEUE }).then(
      () => assert.fail('published with no stream'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof BrokerUnavailableError, String(error));
    assert.match((error as Error).message, /no responders/);
    assert.ok(Date.now() - started >= 1_500, `failed after ${Date.now() - started} ms, not at once`);
  });
});
