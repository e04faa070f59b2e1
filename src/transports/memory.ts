// memory:// — an in-process transport for unit tests and the inline runner. Messages live in this process
// only: nothing survives it and no other process can see them. It implements the full contract otherwise
// (priorities, delayed delivery, prefetch, reject to dead letters) so layers above can be tested against it.

import { randomUUID } from 'node:crypto';
import type { WireMessage } from '../protocol/message.ts';
import { consumerMap } from './presence.ts';
import { dedupeId, describeMessage, type ConsumeOptions, type DeadLetter, type Delivery, type QueueConsumers, type QueueStats, type Route, type Subscription, type Transport } from './transport.ts';

interface Stored {
  seq: number;
  queue: string;
  priority: number;
  visibleAt: number;
  message: WireMessage;
  delivered: boolean;
}

interface Consumer {
  queues: readonly string[];
  prefetch: number;
  held: number;
  active: boolean;
  onDelivery: (delivery: Delivery) => void;
}

export class MemoryTransport implements Transport {
  readonly capabilities = { delayedDelivery: true, priorities: true, crossProcess: false, deduplication: true };
  private readonly waiting: Stored[] = [];
  private readonly unacked = new Map<number, Stored>();
  private readonly dead = new Map<string, DeadLetter>();
  private readonly subscribers = new Set<Consumer>();
  /** Announced consumers (presence): `<queue>\n<consumer>` → when the announcement expires (ms). */
  private readonly announced = new Map<string, number>();
  private seq = 0;
  /** Task ids of pending deduplicated messages. */
  private readonly pendingIds = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
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
    if (route.deduplicate) {
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
    const consumer: Consumer = { queues: options.queues, prefetch: options.prefetch, held: 0, active: true, onDelivery };
    this.subscribers.add(consumer);
    queueMicrotask(() => this.dispatch());
    return {
      cancel: async () => {
        consumer.active = false;
        this.subscribers.delete(consumer);
      },
    };
  }

  /** Hands visible messages to consumers with room in their window: highest priority first, then FIFO. */
  private dispatch(): void {
    if (this.closed) return;
    const now = Date.now();
    let nextVisible = Infinity;
    for (const consumer of this.subscribers) {
      while (consumer.active && consumer.held < consumer.prefetch) {
        let best = -1;
        for (let i = 0; i < this.waiting.length; i++) {
          const m = this.waiting[i]!;
          if (!consumer.queues.includes(m.queue)) continue;
          if (m.visibleAt > now) {
            nextVisible = Math.min(nextVisible, m.visibleAt);
            continue;
          }
          const b = best >= 0 ? this.waiting[best]! : undefined;
          if (!b || m.priority > b.priority || (m.priority === b.priority && m.seq < b.seq)) best = i;
        }
        if (best < 0) break;
        const [stored] = this.waiting.splice(best, 1);
        this.handOut(consumer, stored!);
      }
    }
    clearTimeout(this.timer);
    if (nextVisible !== Infinity) {
      this.timer = setTimeout(() => this.dispatch(), Math.max(1, nextVisible - Date.now()));
      this.timer.unref();
    }
  }

  private handOut(consumer: Consumer, stored: Stored): void {
    consumer.held++;
    this.unacked.set(stored.seq, stored);
    const redelivered = stored.delivered;
    stored.delivered = true;
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      consumer.held--;
      this.unacked.delete(stored.seq);
      queueMicrotask(() => this.dispatch());
      return true;
    };
    consumer.onDelivery({
      message: stored.message,
      queue: stored.queue,
      redelivered,
      ack: async () => {
        if (settle()) this.release(stored.message);
      },
      reject: async ({ requeue, reason }) => {
        if (!settle()) return;
        if (requeue) {
          stored.visibleAt = 0;
          this.waiting.push(stored);
        } else {
          this.release(stored.message);
          const id = randomUUID();
          this.dead.set(id, { id, queue: stored.queue, reason: reason ?? 'rejected', createdAt: new Date(), message: stored.message, ...describeMessage(stored.message) });
        }
      },
    });
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
    this.closed = true;
    clearTimeout(this.timer);
    this.subscribers.clear();
  }
}
