// memory:// — an in-process transport for unit tests and the inline runner. Messages live in this process
// only: nothing survives it and no other process can see them. It implements the full contract otherwise
// (priorities, delayed delivery, prefetch, reject to dead letters) so layers above can be tested against it.

import { randomUUID } from 'node:crypto';
import type { WireMessage } from '../protocol/message.ts';
import { broadcastCopyQueue } from '../protocol/queues.ts';
import { consumerMap } from './presence.ts';
import { PullSubscriptions, type ClaimResult, type QueueStore } from './subscription.ts';
import { dedupeId, dedupeTtl, describeMessage, type ConsumeOptions, type DeadLetter, type Delivery, type QueueConsumers, type QueueStats, type Route, type Subscription, type Transport } from './transport.ts';

interface Stored {
  seq: number;
  queue: string;
  priority: number;
  visibleAt: number;
  message: WireMessage;
  delivered: boolean;
}

export class MemoryTransport implements Transport {
  readonly capabilities = { delayedDelivery: true, priorities: true, crossProcess: false, deduplication: true, broadcast: true };
  private readonly waiting: Stored[] = [];
  private readonly unacked = new Map<number, Stored>();
  private readonly dead = new Map<string, DeadLetter>();
  private readonly subscriptions = new PullSubscriptions();
  /** The pokes of idle consumers, called when a message may have become visible. */
  private readonly watchers = new Set<() => void>();
  /** Broadcast queue → its consumers now → how many of their subscriptions consume it. */
  private readonly broadcastConsumers = new Map<string, Map<string, number>>();
  /** Announced consumers (presence): `<queue>\n<consumer>` → when the announcement expires (ms). */
  private readonly announced = new Map<string, number>();
  private seq = 0;
  /** Task ids of pending deduplicated messages. */
  private readonly pendingIds = new Set<string>();
  /** Task ids published with `deduplicate: { ttlMs }`, and until when each is taken (ms). */
  private readonly ttlIds = new Map<string, number>();
  private closed = false;

  constructor(readonly url = 'memory://') {}

  async publish(message: WireMessage, route: Route): Promise<void> {
    this.insert(message, route);
    this.dispatch();
  }

  async publishMany(batch: ReadonlyArray<readonly [WireMessage, Route]>): Promise<void> {
    for (const [message, route] of batch) this.insert(message, route);
    this.dispatch();
  }

  private insert(message: WireMessage, route: Route): void {
    if (route.broadcast) {
      // A copy for each consumer of the broadcast queue now, in its own copy queue.
      for (const consumer of this.broadcastConsumers.get(route.queue)?.keys() ?? []) this.insert(message, { ...route, queue: broadcastCopyQueue(route.queue, consumer), broadcast: false });
      return;
    }
    const ttl = dedupeTtl(message, route);
    if (ttl) {
      const now = Date.now();
      if ((this.ttlIds.get(ttl.id) ?? 0) > now) return;
      // Lapsed ids go now and then, as SQLite's rows and Redis's keys do.
      if (this.ttlIds.size >= 1000 && this.ttlIds.size % 1000 === 0) for (const [id, until] of this.ttlIds) if (until <= now) this.ttlIds.delete(id);
      this.ttlIds.set(ttl.id, now + ttl.ttlMs);
    } else if (route.deduplicate) {
      const id = dedupeId(message)!;
      if (this.pendingIds.has(id)) return;
      this.pendingIds.add(id);
    }
    this.waiting.push({
      seq: this.seq++,
      queue: route.queue,
      priority: route.priority ?? 0,
      visibleAt: route.delayUntil?.getTime() ?? 0,
      message,
      delivered: false,
    });
  }

  async consume(options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<Subscription> {
    const broadcast = options.broadcast;
    const queues = broadcast ? [...options.queues, ...broadcast.queues.map((q) => broadcastCopyQueue(q, broadcast.consumer))] : options.queues;
    const unregister = broadcast ? this.registerBroadcast(broadcast.consumer, broadcast.queues) : undefined;
    return this.subscriptions.start(new MemoryQueueStore(this, queues, unregister), { ...options, queues, pollMs: 60_000 }, onDelivery);
  }

  /** Makes `consumer` a recipient of the broadcast queues' messages until the returned function is called. */
  private registerBroadcast(consumer: string, queues: readonly string[]): () => void {
    for (const queue of queues) {
      let consumers = this.broadcastConsumers.get(queue);
      if (!consumers) this.broadcastConsumers.set(queue, (consumers = new Map<string, number>()));
      consumers.set(consumer, (consumers.get(consumer) ?? 0) + 1);
    }
    return () => {
      for (const queue of queues) {
        const consumers = this.broadcastConsumers.get(queue);
        const n = (consumers?.get(consumer) ?? 1) - 1;
        if (n > 0) consumers!.set(consumer, n);
        else consumers?.delete(consumer);
      }
    };
  }

  /** Tells idle consumers that a message may be visible now. */
  private dispatch(): void {
    if (this.closed) return;
    for (const poke of this.watchers) poke();
  }

  /** For MemoryQueueStore: calls `poke` on every publish and requeue. */
  watch(poke: () => void): () => void {
    this.watchers.add(poke);
    return () => this.watchers.delete(poke);
  }

  /** For MemoryQueueStore: takes up to `max` visible messages of `queues`, highest priority first, then FIFO. */
  claim(queues: readonly string[], max: number): ClaimResult<Stored> {
    const now = Date.now();
    let nextVisibleAt: number | undefined;
    const eligible: number[] = [];
    for (let i = 0; i < this.waiting.length; i++) {
      const m = this.waiting[i]!;
      if (!queues.includes(m.queue)) continue;
      if (m.visibleAt > now) nextVisibleAt = Math.min(nextVisibleAt ?? m.visibleAt, m.visibleAt);
      else eligible.push(i);
    }
    const rank = (i: number): Stored => this.waiting[i]!;
    eligible.sort((a, b) => rank(b).priority - rank(a).priority || rank(a).seq - rank(b).seq);
    const taken = eligible.slice(0, max);
    const claimed = taken.map((i) => {
      const stored = this.waiting[i]!;
      this.unacked.set(stored.seq, stored);
      const redelivered = stored.delivered;
      stored.delivered = true;
      return { handle: stored, message: stored.message, queue: stored.queue, redelivered };
    });
    for (const i of taken.sort((a, b) => b - a)) this.waiting.splice(i, 1);
    return { claimed, nextVisibleAt };
  }

  /** For MemoryQueueStore: settles a held message (ack, requeue or dead letter). */
  settle(stored: Stored, outcome: { requeue: true } | { requeue: false; reason?: string }): void {
    if (!this.unacked.delete(stored.seq)) return;
    if (outcome.requeue) {
      stored.visibleAt = 0;
      this.waiting.push(stored);
      this.dispatch();
      return;
    }
    this.release(stored.message);
    if (outcome.reason !== undefined) {
      const id = randomUUID();
      this.dead.set(id, { id, queue: stored.queue, reason: outcome.reason, createdAt: new Date(), message: stored.message, ...describeMessage(stored.message) });
    }
  }

  private release(message: WireMessage): void {
    const id = dedupeId(message);
    if (id) this.pendingIds.delete(id);
  }

  async purge(queue: string): Promise<number> {
    let removed = 0;
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      if (this.waiting[i]!.queue === queue) {
        this.release(this.waiting[i]!.message);
        this.waiting.splice(i, 1);
        removed++;
      }
    }
    return removed;
  }

  async depth(queue: string): Promise<number> {
    return this.waiting.filter((m) => m.queue === queue).length;
  }

  async stats(): Promise<QueueStats[]> {
    const byQueue = new Map<string, QueueStats>();
    const row = (queue: string): QueueStats => {
      let s = byQueue.get(queue);
      if (!s) byQueue.set(queue, (s = { queue, ready: 0, scheduled: 0, unacked: 0 }));
      return s;
    };
    const now = Date.now();
    for (const m of this.waiting) row(m.queue)[m.visibleAt > now ? 'scheduled' : 'ready']++;
    for (const m of this.unacked.values()) row(m.queue).unacked++;
    return [...byQueue.values()].sort((a, b) => a.queue.localeCompare(b.queue));
  }

  async listDeadLetters(options: { limit?: number } = {}): Promise<DeadLetter[]> {
    return [...this.dead.values()].slice(0, options.limit ?? 100);
  }

  async requeueDeadLetter(id: string): Promise<boolean> {
    const letter = this.dead.get(id);
    if (!letter) return false;
    this.dead.delete(id);
    const priority = letter.message.properties.priority;
    await this.publish(letter.message, { queue: letter.queue, priority: typeof priority === 'number' ? priority : 0 });
    return true;
  }

  async announceConsumer(consumer: string, queues: readonly string[], ttlSec: number): Promise<void> {
    const expiresAt = Date.now() + ttlSec * 1000;
    for (const queue of queues) this.announced.set(`${queue}\n${consumer}`, expiresAt);
  }

  async withdrawConsumer(consumer: string, queues: readonly string[]): Promise<void> {
    for (const queue of queues) this.announced.delete(`${queue}\n${consumer}`);
  }

  async consumers(queue?: string): Promise<Map<string, QueueConsumers>> {
    const now = Date.now();
    const live: Array<[string, string]> = [];
    for (const [key, expiresAt] of this.announced) {
      if (expiresAt <= now) this.announced.delete(key);
      else {
        const cut = key.lastIndexOf('\n');
        live.push([key.slice(0, cut), key.slice(cut + 1)]);
      }
    }
    return consumerMap(live, queue);
  }

  async close(): Promise<void> {
    await this.subscriptions.releaseAll();
    this.closed = true;
    this.watchers.clear();
  }
}

/** The memory primitives under the shared consumer (subscription.ts): no leases, nothing to renew. */
class MemoryQueueStore implements QueueStore<Stored> {
  constructor(
    private readonly transport: MemoryTransport,
    private readonly queues: readonly string[],
    private readonly unregister: (() => void) | undefined,
  ) {}

  stop(): void {
    this.unregister?.();
  }

  async claim(max: number): Promise<ClaimResult<Stored>> {
    return this.transport.claim(this.queues, max);
  }

  async renew(): Promise<void> {}

  async ack(stored: Stored): Promise<void> {
    this.transport.settle(stored, { requeue: false });
  }

  async requeue(stored: Stored): Promise<void> {
    this.transport.settle(stored, { requeue: true });
  }

  async deadLetter(stored: Stored, reason: string): Promise<void> {
    this.transport.settle(stored, { requeue: false, reason });
  }

  async releaseAll(held: readonly Stored[]): Promise<void> {
    for (const stored of held) this.transport.settle(stored, { requeue: true });
  }

  watch(poke: () => void): () => void {
    return this.transport.watch(poke);
  }
}
