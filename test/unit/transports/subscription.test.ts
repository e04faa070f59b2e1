// The consumer every pull engine shares (src/transports/subscription.ts): when it claims again after a full window.
// Run on the memory engine, whose store is woken by publishes and requeues only, so every claim seen here is one
// the subscription decided on after a settle.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { buildTaskMessage } from '../../../src/protocol/message.ts';
import { createTransport } from '../../../src/transports/index.ts';
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
