// The consumer every pull engine shares (src/transports/subscription.ts): when it claims again after a full window.
// Run on the memory engine, whose store is woken by publishes and requeues only, so every claim seen here is one
// the subscription decided on after a settle.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { buildTaskMessage } from '../../../src/protocol/message.ts';
import { createTransport } from '../../../src/transports/index.ts';
import { PullSubscription, type QueueStore } from '../../../src/transports/subscription.ts';
import type { Delivery, Transport } from '../../../src/transports/transport.ts';
import { sleep, waitFor } from '../../conformance/helpers/wait.ts';

/** Long enough for a claim the subscription wrongly made to arrive: claims here take microtasks, not time. */
const GRACE_MS = 150;

/** A memory transport with `count` messages on one queue, consumed with `prefetch` and `refillAt`. */
async function consumer(count: number, prefetch: number, refillAt: number | undefined) {
  const transport: Transport = createTransport(`memory://${randomUUID()}`, { visibilityTimeoutSec: 30, pollIntervalMs: 250 });
  const queue = `q-${randomUUID()}`;
  for (let i = 0; i < count; i++) await transport.publish(buildTaskMessage({ name: 'tests.echo', args: [i], id: randomUUID(), queue }), { queue });
  const deliveries: Delivery[] = [];
  let acked = 0;
  let maxHeld = 0;
  const subscription = await transport.consume({ queues: [queue], prefetch, refillAt }, (delivery) => {
    deliveries.push(delivery);
    maxHeld = Math.max(maxHeld, deliveries.length - acked);
  });
  return {
    deliveries,
    /** The most deliveries held (handed out, not acked) at once so far. */
    maxHeld: () => maxHeld,
    ack: async (i: number): Promise<void> => {
      // Counted before the ack resolves: the delivery it lets in can arrive before this await returns.
      acked++;
      await deliveries[i]!.ack();
    },
    stop: async (): Promise<void> => {
      await subscription.cancel();
      await transport.close();
    },
  };
}

describe('PullSubscription: refilling the window', () => {
  it('by default, one ack lets one more in (as basic.qos does)', async () => {
    const c = await consumer(12, 4, undefined);
    try {
      await waitFor(() => c.deliveries.length === 4, { what: '4 deliveries' });
      await c.ack(0);
      await waitFor(() => c.deliveries.length === 5, { what: 'a 5th delivery after one ack' });
    } finally {
      await c.stop();
    }
  });

  it('with a refill mark, claims again only once the held count is down to it, then fills the window in one claim', async () => {
    const c = await consumer(12, 4, 2);
    try {
      await waitFor(() => c.deliveries.length === 4, { what: '4 deliveries' });
      await c.ack(0);
      await sleep(GRACE_MS);
      assert.equal(c.deliveries.length, 4, '3 held is above the mark of 2: no claim yet');
      await c.ack(1);
      await waitFor(() => c.deliveries.length === 6, { what: 'two more once 2 are held' });
      // The rest, acked one at a time as they come: every message arrives, the window never overflows.
      for (let i = 2; i < 12; i++) {
        await waitFor(() => c.deliveries.length > i, { what: `delivery ${i + 1}` });
        await c.ack(i);
      }
      assert.equal(new Set(c.deliveries.map((d) => d.message.headers['id'])).size, 12);
      assert.equal(c.maxHeld(), 4);
    } finally {
      await c.stop();
    }
  });
});

describe('PullSubscription: cancel', () => {
  it('resolves only once a claim on its way has come back, and hands back what that claim took', async () => {
    // A store whose second claim is held open until released, as a broker that serves a pull request late does
    // (nats-server queues pull requests, and can serve one after a publish that followed it).
    const claimed = (handle: string) => ({ handle, message: buildTaskMessage({ name: 'tests.echo', args: [], id: randomUUID(), queue: 'q' }), queue: 'q', redelivered: false });
    let releaseClaim!: (handles: string[]) => void;
    let claims = 0;
    const requeued: string[] = [];
    const store: QueueStore<string> = {
      claim: async () => {
        claims++;
        if (claims === 1) return { claimed: [claimed('first')] };
        const handles = await new Promise<string[]>((resolve) => (releaseClaim = resolve));
        return { claimed: handles.map(claimed) };
      },
      renew: async () => {},
      ack: async () => {},
      requeue: async (handle) => void requeued.push(handle),
      deadLetter: async () => {},
      releaseAll: async () => {},
      waitForWork: () => new Promise<void>(() => {}),
    };
    const delivered: Delivery[] = [];
    const subscription = new PullSubscription(store, { queues: ['q'], prefetch: 1, pollMs: 1_000 }, (d) => delivered.push(d));
    await waitFor(() => delivered.length === 1, { what: 'the first delivery' });
    await delivered[0]!.ack();
    await waitFor(() => claims === 2, { what: 'the second claim on its way' });
    let cancelled = false;
    const cancelling = subscription.cancel().then(() => (cancelled = true));
    await sleep(GRACE_MS);
    assert.equal(cancelled, false, 'cancel waits for the claim on its way');
    releaseClaim(['late']);
    await cancelling;
    assert.deepEqual(requeued, ['late'], 'what the late claim took went back before cancel resolved');
    assert.equal(delivered.length, 1, 'and was never handed out');
  });
});
