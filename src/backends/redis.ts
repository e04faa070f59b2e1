// redis://host:port/db — results in Celery's Redis backend layout (celery/backends/redis.py): the meta JSON
// under `celery-task-meta-<id>`, with an expiry, and PUBLISHed on a channel of the same name, so Python
// clients read Fennel's results and Fennel reads theirs. Waiters SUBSCRIBE, then GET (so a result stored
// before the subscription is not missed), and read every waited key again after a reconnect.

import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { decodeMeta, encodeMeta, type TaskMeta } from '../protocol/result.ts';
import { isReady } from '../protocol/states.ts';
import { callScript, redisOptions } from '../transports/redis.ts';
import type { ResultBackend } from './backend.ts';
import { Waiters } from './waiters.ts';

const PREFIX = 'celery-task-meta-';
const STORE = readFileSync(new URL('./redis/store.lua', import.meta.url), 'utf8');

export interface RedisBackendOptions {
  resultExpiresSec?: number;
}

export class RedisBackend implements ResultBackend {
  private readonly client: Redis;
  private subscriber: Redis | undefined;
  private readonly waiters = new Waiters();
  private readonly expiresSec: number;

  constructor(
    readonly url: string,
    options: RedisBackendOptions = {},
  ) {
    this.expiresSec = options.resultExpiresSec ?? 86_400;
    this.client = new Redis(url, redisOptions());
    this.client.on('error', () => {});
    this.client.defineCommand('fennel_store', { lua: STORE });
  }

  async store(meta: TaskMeta): Promise<void> {
    await callScript(this.client, 'fennel_store', [`${PREFIX}${meta.task_id}`], [encodeMeta(meta), this.expiresSec]);
  }

  async get(taskId: string): Promise<TaskMeta | undefined> {
    const text = await this.client.get(`${PREFIX}${taskId}`);
    return text ? decodeMeta(text) : undefined;
  }

  async wait(taskId: string, options: { timeoutMs?: number; signal?: AbortSignal }): Promise<TaskMeta | undefined> {
    options.signal?.throwIfAborted();
    const subscriber = this.subscriberConnection();
    const first = !this.waiters.has(taskId);
    const waiting = this.waiters.add(taskId, options);
    // The last waiter of an id gone (result, timeout or abort): drop the subscription. Attached before any
    // await, so an abort during the subscription below is never an unhandled rejection.
    const release = (): void => {
      if (!this.waiters.has(taskId)) void subscriber.unsubscribe(`${PREFIX}${taskId}`).catch(() => {});
    };
    waiting.then(release, release);
    if (first) {
      await subscriber.subscribe(`${PREFIX}${taskId}`);
      // Subscribed first, then read: a result stored in between is seen one way or the other.
      const current = await this.get(taskId);
      if (current && isReady(current.status)) this.waiters.wake(taskId, current);
    }
    return waiting;
  }

  private subscriberConnection(): Redis {
    if (this.subscriber) return this.subscriber;
    // No ready check: ioredis's INFO-based check is refused on a connection in subscriber mode, which tears
    // the reconnecting subscriber down again and again.
    const subscriber = this.client.duplicate({ enableReadyCheck: false });
    subscriber.on('error', () => {});
    subscriber.on('message', (channel: string, text: string) => {
      const taskId = channel.slice(PREFIX.length);
      if (!this.waiters.has(taskId)) return;
      try {
        const meta = decodeMeta(text);
        if (isReady(meta.status)) this.wake(taskId, meta);
      } catch {
        // not a meta document: ignore it, as a Celery client would not wake on it either
      }
    });
    // After a reconnect ioredis subscribes again; results published while we were away are read back here.
    subscriber.on('ready', () => {
      const channels = [...this.waiters.ids()].map((id) => `${PREFIX}${id}`);
      void (channels.length ? subscriber.subscribe(...channels) : Promise.resolve())
        .catch(() => {})
        .then(() => this.recheck());
    });
    this.subscriber = subscriber;
    return subscriber;
  }

  private wake(taskId: string, meta: TaskMeta): void {
    this.waiters.wake(taskId, meta);
  }

  private async recheck(): Promise<void> {
    const ids = [...this.waiters.ids()];
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const texts = await this.client.mget(...chunk.map((id) => `${PREFIX}${id}`)).catch(() => []);
      texts.forEach((text, j) => {
        if (!text) return;
        const meta = decodeMeta(text);
        if (isReady(meta.status)) this.wake(chunk[j]!, meta);
      });
    }
  }

  async forget(taskId: string): Promise<void> {
    await this.client.del(`${PREFIX}${taskId}`);
  }

  /** Scans at most 100,000 result keys (Celery keeps no index of them). */
  async countByState(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    let cursor = '0';
    let seen = 0;
    do {
      const [next, keys] = await this.client.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) {
        for (const text of await this.client.mget(...keys)) {
          const status = text ? /"status"\s*:\s*"([A-Z]+)"/.exec(text)?.[1] : undefined;
          if (status) counts[status] = (counts[status] ?? 0) + 1;
        }
      }
      seen += keys.length;
    } while (cursor !== '0' && seen < 100_000);
    return counts;
  }

  async close(): Promise<void> {
    this.waiters.wakeAll();
    this.subscriber?.disconnect();
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
