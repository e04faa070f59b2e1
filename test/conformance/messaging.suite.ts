// Conformance for the messaging primitives above plain queues (issue #14): direct queues (a queue only one worker
// consumes, Celery's `<node>.dq2`) and broadcast queues (one copy of a message for every consumer online, Celery's
// `Broadcast`). Run against every engine by messaging.test.ts. Each case opens its own transports (a second one on
// its own connection where the engine is crossProcess, so copies go through the broker), uses randomUUID queue
// names, and closes what it opens. A negative check ("nothing more arrives") first pauses for a grace period.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { buildTaskMessage, type WireMessage } from '../../src/protocol/message.ts';
import { broadcastCopyQueue, directQueue } from '../../src/protocol/queues.ts';
import type { Delivery, Subscription, Transport } from '../../src/transports/transport.ts';
import { CleanupScope, scopedWith } from './helpers/scope.ts';
import { sleep, waitFor } from './helpers/wait.ts';

export interface MessagingSuiteOptions {
  /** A fresh transport on a fresh broker (or database). */
  open: () => Promise<Transport> | Transport;
  /** A second transport on the same broker as `transport`, on its own connection (crossProcess engines). */
  reopen?: (transport: Transport) => Promise<Transport> | Transport;
  /** Queues the case created, to delete from the broker afterwards (AMQP). */
  created?: (queue: string) => void;
  /**
   * The engine keeps each consumer's copies in a queue of its own that outlives the consumer (sqlite, redis,
   * memory), so the suite can check that no copy was made for a consumer that was gone. AMQP's copy queues are
   * exclusive to their consumer's connection and go with it.
   */
  durableCopies?: boolean;
}

const GRACE_MS = 700;

function message(queue: string): { id: string; message: WireMessage } {
  const id = randomUUID();
  return { id, message: buildTaskMessage({ name: 'tests.echo', args: [id], id, queue }) };
}

class Inbox {
  readonly deliveries: Delivery[] = [];
  readonly push = (d: Delivery): void => void this.deliveries.push(d);
  get ids(): string[] {
    return this.deliveries.map((d) => String(d.message.headers['id']));
  }
  async waitForCount(n: number, what: string): Promise<void> {
    await waitFor(() => this.deliveries.length >= n, { timeoutMs: 15_000, what });
  }
}

class Scope extends CleanupScope {
  constructor(private readonly options: MessagingSuiteOptions) {
    super();
  }
  async open(): Promise<Transport> {
    const t = await this.options.open();
    this.cleanups.push(() => t.close());
    return t;
  }
  /** Another connection to the same broker where the engine has them; else the same transport. */
  async peer(t: Transport): Promise<Transport> {
    if (!this.options.reopen) return t;
    const second = await this.options.reopen(t);
    this.cleanups.push(() => second.close());
    return second;
  }
  async consume(t: Transport, queues: string[], inbox: Inbox, broadcast?: { queues: string[]; consumer: string }): Promise<Subscription> {
    const sub = await t.consume({ queues, prefetch: 10, ...(broadcast ? { broadcast } : {}) }, (d) => {
      inbox.push(d);
      void d.ack();
    });
    this.cleanups.push(() => sub.cancel());
    return sub;
  }
  get durableCopies(): boolean {
    return this.options.durableCopies === true;
  }
  queue(label: string): string {
    return this.created(`conformance-${label}-${randomUUID()}`);
  }
  /** Notes a queue (or exchange) the case makes the broker create, for clean-up. */
  created(queue: string): string {
    this.options.created?.(queue);
    return queue;
  }
}

export function messagingSuite(name: string, options: MessagingSuiteOptions): void {
  const scoped = scopedWith(() => new Scope(options));

  describe(`messaging conformance: ${name}`, () => {
    describe('direct queues', () => {
      it('a message for one worker reaches only that worker', scoped(async (s) => {
        const t = await s.open();
        const other = await s.peer(t);
        const shared = s.queue('shared');
        const [nodeA, nodeB] = [`a-${randomUUID()}@host`, `b-${randomUUID()}@host`];
        for (const node of [nodeA, nodeB]) s.created(directQueue(node));
        const a = new Inbox();
        const b = new Inbox();
        await s.consume(t, [directQueue(nodeA), shared], a);
        await s.consume(other, [directQueue(nodeB), shared], b);
        const sent = Array.from({ length: 5 }, () => message(directQueue(nodeA)));
        for (const m of sent) await other.publish(m.message, { queue: directQueue(nodeA) });
        await a.waitForCount(5, 'the direct messages at worker A');
        await sleep(GRACE_MS);
        assert.deepEqual(a.ids.sort(), sent.map((m) => m.id).sort());
        assert.equal(b.deliveries.length, 0, 'worker B received none of A’s direct messages');
      }));

      it('a direct message for a worker that is not running waits in its queue until it starts', scoped(async (s) => {
        const t = await s.open();
        const node = `late-${randomUUID()}@host`;
        const q = directQueue(node);
        s.created(q);
        const m = message(q);
        await t.publish(m.message, { queue: q });
        await sleep(GRACE_MS);
        assert.equal(await t.depth(q), 1, 'the message waits in the direct queue');
        const inbox = new Inbox();
        await s.consume(await s.peer(t), [q], inbox);
        await inbox.waitForCount(1, 'the direct message once its worker starts');
        assert.deepEqual(inbox.ids, [m.id]);
      }));
    });

    describe('broadcast queues', () => {
      it('reaches every consumer online exactly once, each with a delivery of its own', scoped(async (s) => {
        const t = await s.open();
        const q = s.queue('bcast');
        const inboxes = [new Inbox(), new Inbox(), new Inbox()];
        const nodes = inboxes.map((_, i) => `w${i}-${randomUUID()}@host`);
        for (const [i, inbox] of inboxes.entries()) {
          const own = i === 0 ? t : await s.peer(t);
          await s.consume(own, [s.queue('work')], inbox, { queues: [q], consumer: nodes[i]! });
        }
        const sent = Array.from({ length: 3 }, () => message(q));
        for (const m of sent) await t.publish(m.message, { queue: q, broadcast: true });
        for (const [i, inbox] of inboxes.entries()) await inbox.waitForCount(3, `the broadcasts at consumer ${i}`);
        await sleep(GRACE_MS);
        for (const [i, inbox] of inboxes.entries()) {
          assert.deepEqual(inbox.ids, sent.map((m) => m.id), `consumer ${i} received each broadcast once, in publish order`);
        }
      }));

      it('a consumer that starts after a broadcast, or stopped before it, does not receive it', scoped(async (s) => {
        const t = await s.open();
        const q = s.queue('bcast');
        const stayed = new Inbox();
        const left = new Inbox();
        await s.consume(t, [s.queue('work')], stayed, { queues: [q], consumer: `stays-${randomUUID()}@host` });
        const leaver = `leaves-${randomUUID()}@host`;
        const leaving = await s.consume(await s.peer(t), [s.queue('work')], left, { queues: [q], consumer: leaver });
        await leaving.cancel();
        const m = message(q);
        await t.publish(m.message, { queue: q, broadcast: true });
        await stayed.waitForCount(1, 'the broadcast at the consumer that stayed');
        const late = new Inbox();
        await s.consume(await s.peer(t), [s.queue('work')], late, { queues: [q], consumer: `late-${randomUUID()}@host` });
        await sleep(GRACE_MS * 2);
        assert.deepEqual(stayed.ids, [m.id]);
        assert.equal(left.deliveries.length, 0, 'the consumer that stopped first received nothing');
        assert.equal(late.deliveries.length, 0, 'the consumer that started later received nothing');
        if (s.durableCopies) assert.equal(await t.depth(broadcastCopyQueue(q, leaver)), 0, 'no copy was made for the consumer that had stopped');
      }));

      it('a consumer that starts under the name of one that died gets none of the copies sent meanwhile', scoped(async (s) => {
        const t = await s.open();
        const q = s.queue('bcast');
        const node = `reborn-${randomUUID()}@host`;
        // A consumer that died without withdrawing: its announcement still counts (for up to its TTL).
        await t.announceConsumer?.(node, [q], 60);
        await t.publish(message(q).message, { queue: q, broadcast: true });
        const reborn = new Inbox();
        await s.consume(await s.peer(t), [s.queue('work')], reborn, { queues: [q], consumer: node });
        const m = message(q);
        await t.publish(m.message, { queue: q, broadcast: true });
        await reborn.waitForCount(1, 'the broadcast sent after it started');
        await sleep(GRACE_MS);
        assert.deepEqual(reborn.ids, [m.id], 'only the broadcast sent while it consumed');
      }));

      it('a consumer of the queue by its plain name is not a broadcast subscriber', scoped(async (s) => {
        const t = await s.open();
        const q = s.queue('bcast');
        const subscriber = new Inbox();
        const plain = new Inbox();
        await s.consume(t, [s.queue('work')], subscriber, { queues: [q], consumer: `sub-${randomUUID()}@host` });
        const m = message(q);
        await t.publish(m.message, { queue: q, broadcast: true });
        await subscriber.waitForCount(1, 'the broadcast at its subscriber');
        // A plain consumer of the name starts only now (AMQP cannot consume a queue that was never declared).
        await s.consume(await s.peer(t), [s.queue('other')], plain);
        await sleep(GRACE_MS);
        assert.equal(plain.deliveries.length, 0);
      }));

      it('a copy handed back (reject with requeue) comes again to the same consumer, and only to it', scoped(async (s) => {
        const t = await s.open();
        const q = s.queue('bcast');
        const seen: Delivery[] = [];
        const other = new Inbox();
        const node = `requeue-${randomUUID()}@host`;
        const sub = await t.consume({ queues: [s.queue('work')], prefetch: 5, broadcast: { queues: [q], consumer: node } }, (d) => {
          seen.push(d);
          void (seen.length === 1 ? d.reject({ requeue: true }) : d.ack());
        });
        s.created(broadcastCopyQueue(q, node));
        await s.consume(await s.peer(t), [s.queue('work')], other, { queues: [q], consumer: `other-${randomUUID()}@host` });
        const m = message(q);
        await t.publish(m.message, { queue: q, broadcast: true });
        await waitFor(() => seen.length >= 2, { timeoutMs: 15_000, what: 'the requeued copy handed out again' });
        await other.waitForCount(1, 'the other consumer’s copy');
        await sleep(GRACE_MS);
        await sub.cancel();
        assert.deepEqual(seen.map((d) => String(d.message.headers['id'])), [m.id, m.id]);
        assert.equal(seen[1]!.redelivered, true);
        assert.deepEqual(other.ids, [m.id], 'the other consumer got its copy once');
      }));
    });
  });
}
