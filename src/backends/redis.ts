// redis://host:port/db — results in Celery's Redis backend layout (celery/backends/redis.py): the meta JSON
// under `celery-task-meta-<id>`, with an expiry, and PUBLISHed on a channel of the same name, so Python
// clients read Fennel's results and Fennel reads theirs. Waiters SUBSCRIBE, then GET (so a result stored
// before the subscription is not missed), and read every waited key again after a reconnect.

import type { Redis } from 'ioredis';
import { BrokerUnavailableError } from '../errors.ts';
import { decodeMeta, encodeMeta, type TaskMeta } from '../protocol/result.ts';
import { isReady, States } from '../protocol/states.ts';
import { connectRedis } from '../clients/redis/client.ts';
import { parseRedisUrl } from '../clients/redis/url.ts';
import { celeryChordJoinScript, celeryChordStartScript, leaseReleaseScript, leaseScript, parkScript, releaseScript, storeScript } from './redis/scripts.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import { Batcher } from '../util/batcher.ts';
import { decodeJson } from '../protocol/json.ts';
import type { ChordJoin, ChordMemberFailure, Lease, ParkOutcome, ReleasedCall, ResultBackend, Revocation, WaitOptions } from './backend.ts';
import { Waiters } from './waiters.ts';

const PREFIX = 'celery-task-meta-';
/** Object references (park.lua, release.lua): a parked call, the inputs it waits for, the calls parked on an input. */
const PARKED = 'fennel.parked.';
const WAITS = 'fennel.waits.';
const DEPENDENTS = 'fennel.dependents.';
/** Revoked ids: a zset scored by expiry (ms), read whole by a worker when it starts or reconnects. */
const REVOKED = 'fennel.revoked';

/** A lease (redis/lease.lua): a string holding its holder, expiring with the lease. */
const LEASE_PREFIX = 'fennel.lease.';
/** A table of records (putRecord): a hash of key → JSON, kept until deleted. */
const RECORDS_PREFIX = 'fennel.records.';

/**
 * A chord's keys: Celery's own join (celery/backends/redis.py: `.j` the members' entries scored by group_index,
 * `.t` members added after the start, `.s` the size), shared with Celery's workers, and Fennel's done marker
 * (redis/celery_chord_join.lua).
 */
function chordKeys(groupId: string): { join: string; added: string; size: string; done: string } {
  const base = `celery-taskset-meta-${groupId}`;
  return { join: `${base}.j`, added: `${base}.t`, size: `${base}.s`, done: `fennel.chord.${groupId}.done` };
}

/**
 * A member's entry in Celery's join: its backend's `encode([1, task_id, state, result])`, json.dumps with its
 * ", " separators, so the same task id and scalar result give the same bytes as Celery's worker writes.
 */
function chordEntry(taskId: string | undefined, resultJson: string): string {
  return `[1, ${taskId === undefined ? 'null' : JSON.stringify(taskId)}, "SUCCESS", ${resultJson}]`;
}

/** Celery's PROPAGATE_STATES: a member in one of them fails the chord (`_unpack_chord_result`). */
const FAILED_STATES: ReadonlySet<string> = new Set([States.FAILURE, States.REVOKED]);

/**
 * The results of a join's entries (flat [entry, score, …] in score order), as Celery's `_unpack_chord_result`
 * reads them, plus the first member recorded as failed. One result per group_index: a Celery worker that ran a
 * member again may have recorded it twice (another result, other bytes); the lexically first entry counts.
 */
function unpackChord(flat: ReadonlyArray<string | number>): { results: unknown[]; failed?: ChordMemberFailure } {
  const results: unknown[] = [];
  let failed: ChordMemberFailure | undefined;
  let previous: string | undefined;
  for (let i = 0; i < flat.length; i += 2) {
    const score = String(flat[i + 1]);
    // Celery scores a member without a group_index +inf: those are all kept.
    if (score === previous && score !== 'inf') continue;
    previous = score;
    const entry = decodeJson(String(flat[i]));
    if (!Array.isArray(entry) || entry.length < 4) throw new Error(`chord entry is not Celery's [1, task id, state, result]: ${String(flat[i]).slice(0, 200)}`);
    const [, taskId, status, result] = entry as [unknown, unknown, unknown, unknown];
    if (!failed && FAILED_STATES.has(String(status))) failed = { taskId: String(taskId), status: String(status), result };
    results.push(result);
  }
  return failed ? { results, failed } : { results };
}

export interface RedisBackendOptions {
  resultExpiresSec?: number;
  /** How long a command waits for a connection before it fails with BrokerUnavailableError (clients/redis/client.ts). */
  connectTimeoutMs?: number;
}

export class RedisBackend implements ResultBackend {
  private readonly client: Redis;
  private subscriber: Redis | undefined;
  // The last waiter of an id gone (result, timeout or abort): its subscription is dropped.
  private readonly waiters = new Waiters(undefined, (taskId) => void this.unsubscribes.add(taskId));
  private readonly expiresSec: number;
  private readonly revocationWatchers = new Set<(revocation: Revocation) => void>();
  /** New revocations are pushed on this channel; pub/sub spans databases, so the name carries the database. */
  private readonly revokedChannel: string;
  // One event-loop turn's stores go out as one script call, and its new waiters as one SUBSCRIBE and one
  // MGET (and released ones as one UNSUBSCRIBE): a worker settling 100 tasks, or a producer waiting on 500
  // results, costs a few commands, not a few hundred.
  private readonly stores = new Batcher<TaskMeta>(500, (metas) => this.storeBatch(metas));
  /** Task ids whose outcome the last store batches found calls parked on (store.lua): settle() releases them. */
  private readonly toRelease = new Set<string>();
  // Neither batch's promise rejects (a failed subscription rejects its ids' waiters instead), so callers need
  // not hold on to it.
  private readonly subscribes = new Batcher<string>(1000, (ids) => this.subscribeBatch(ids));
  private readonly unsubscribes = new Batcher<string>(1000, (ids) => this.unsubscribeBatch(ids).catch(() => {}));

  /** The URL with any password masked: what errors and logs show. */
  readonly url: string;

  constructor(url: string, options: RedisBackendOptions = {}) {
    const target = parseRedisUrl(url);
    this.url = target.safeUrl;
    this.expiresSec = options.resultExpiresSec ?? 86_400;
    // As the transport's: reconnects for ever, commands wait for a connection at most connectTimeoutMs, a
    // database the server lacks is a ConfigError. The subscriber (a duplicate) follows the same rules.
    this.client = connectRedis(target, { role: 'result backend', connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, connectionName: `fennel:${process.pid}` });
    storeScript.install(this.client);
    celeryChordJoinScript.install(this.client);
    celeryChordStartScript.install(this.client);
    leaseScript.install(this.client);
    leaseReleaseScript.install(this.client);
    parkScript.install(this.client);
    releaseScript.install(this.client);
    this.revokedChannel = `${REVOKED}.${target.db}`;
  }

  store(meta: TaskMeta): Promise<void> {
    return this.stores.add(meta);
  }

  private async storeBatch(metas: TaskMeta[]): Promise<void> {
    // A STARTED or PROGRESS meta followed in the same batch by a later meta of the same task is never
    // written: it would be overwritten within the same script, and a waiter wakes only on the ready state.
    // (A fast task's STARTED and SUCCESS usually meet here: STARTED costs it nothing.)
    const last = new Map<string, number>();
    metas.forEach((meta, i) => last.set(meta.task_id, i));
    const keys: string[] = [];
    const args: Array<string | number> = [];
    metas.forEach((meta, i) => {
      if (last.get(meta.task_id) !== i && (meta.status === States.STARTED || meta.status === States.PROGRESS)) return;
      keys.push(`${PREFIX}${meta.task_id}`);
      args.push(meta.status, encodeMeta(meta));
    });
    const parked = (await storeScript.run(this.client, { metaKeys: keys }, { expiresSec: this.expiresSec, statusAndMeta: args })) as string[];
    for (const id of parked) this.toRelease.add(id);
  }

  /** app.put's objects: a new id, so neither the SUCCESS guard nor the batch's order matters; one SET and PUBLISH. */
  async storeFor(meta: TaskMeta, ttlSec: number): Promise<void> {
    const key = `${PREFIX}${meta.task_id}`;
    const text = encodeMeta(meta);
    const write = this.client.multi();
    if (ttlSec === 0) write.set(key, text);
    else write.set(key, text, 'EX', Math.max(1, Math.ceil(ttlSec)));
    for (const [error] of (await write.publish(key, text).exec()) ?? []) if (error) throw error;
  }

  async settle(meta: TaskMeta): Promise<ReleasedCall[]> {
    await this.stores.add(meta);
    // The store's own script said whether calls are parked on this task: a second round trip only then.
    if (!this.toRelease.delete(meta.task_id)) return [];
    const flat = (await releaseScript.run(this.client, { dependents: `${DEPENDENTS}${meta.task_id}`, meta: `${PREFIX}${meta.task_id}` }, { input: meta.task_id })) as Array<string | number>;
    const released: ReleasedCall[] = [];
    for (let i = 0; i < flat.length; i += 4) released.push({ taskId: String(flat[i]), callJson: String(flat[i + 1]), input: meta.task_id, status: String(flat[i + 2]), again: Number(flat[i + 3]) === 1 });
    return released;
  }

  async park(taskId: string, inputs: readonly string[], callJson: string): Promise<ParkOutcome> {
    const unique = [...new Set(inputs)];
    const inputKeys = unique.flatMap((id) => [`${PREFIX}${id}`, `${DEPENDENTS}${id}`]);
    const reply = (await parkScript.run(this.client, { parked: `${PARKED}${taskId}`, waits: `${WAITS}${taskId}`, inputKeys }, { taskId, callJson, expiresSec: this.expiresSec, inputs: unique })) as [number, string?, string?];
    if (reply[0] === 1) return { ready: true };
    if (reply[0] === 2) return { ready: false, failed: { input: String(reply[1]), status: String(reply[2]) } };
    return { ready: false };
  }

  async get(taskId: string): Promise<TaskMeta | undefined> {
    const text = await this.client.get(`${PREFIX}${taskId}`);
    return text ? decodeMeta(text) : undefined;
  }

  wait(taskId: string, options: WaitOptions): Promise<TaskMeta | undefined> {
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    this.subscriberConnection();
    // The first waiter of an id is the one that grows the set (a size, not another lookup in a large map).
    const ids = this.waiters.size;
    const waiting = this.waiters.add(taskId, options);
    if (this.waiters.size > ids) void this.subscribes.add(taskId);
    return waiting;
  }

  /**
   * Subscribes to the ids' channels, then reads their keys: a result stored in between is seen one way or the
   * other. A failure rejects the ids' waiters, which no result could reach.
   */
  private async subscribeBatch(ids: string[]): Promise<void> {
    const keys = ids.map((id) => `${PREFIX}${id}`);
    try {
      await this.subscriberConnection().subscribe(...keys);
      const texts = await this.client.mget(...keys);
      texts.forEach((text, i) => this.wakeIfReady(ids[i]!, text));
    } catch (error) {
      for (const id of ids) this.waiters.reject(id, error);
    }
  }

  private async unsubscribeBatch(ids: string[]): Promise<void> {
    // An id waited for again since it was released keeps its subscription.
    const channels = ids.filter((id) => !this.waiters.has(id)).map((id) => `${PREFIX}${id}`);
    if (channels.length) await this.subscriber?.unsubscribe(...channels);
  }

  // Every text read or published is for an id waited for (save a rare race), so it is decoded without asking.
  private wakeIfReady(taskId: string, text: string | null): void {
    if (!text) return;
    try {
      const meta = decodeMeta(text);
      if (isReady(meta.status)) this.waiters.wake(taskId, meta);
    } catch {
      // not a meta document: ignore it, as a Celery client would not wake on it either
    }
  }

  private subscriberConnection(): Redis {
    if (this.subscriber) return this.subscriber;
    // No ready check: ioredis's INFO-based check is refused on a connection in subscriber mode, which tears
    // the reconnecting subscriber down again and again.
    const subscriber = this.client.duplicate({ enableReadyCheck: false });
    subscriber.on('message', (channel: string, text: string) => {
      if (channel === this.revokedChannel) this.onRevokedMessage(text);
      else this.wakeIfReady(channel.slice(PREFIX.length), text);
    });
    // After a reconnect ioredis subscribes again; results published while we were away are read back here.
    // The revocation channel is subscribed here too: a worker that started while the server was away could not.
    subscriber.on('ready', () => {
      const channels = [...this.waiters.ids()].map((id) => `${PREFIX}${id}`);
      if (this.revocationWatchers.size) channels.push(this.revokedChannel);
      void (channels.length ? subscriber.subscribe(...channels) : Promise.resolve())
        .catch(() => {})
        .then(() => this.recheck());
      // Revocations published while the connection was down are read back from the zset.
      if (this.revocationWatchers.size) void this.readRevocations().catch(() => {});
    });
    this.subscriber = subscriber;
    return subscriber;
  }

  private async recheck(): Promise<void> {
    const ids = [...this.waiters.ids()];
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const texts = await this.client.mget(...chunk.map((id) => `${PREFIX}${id}`)).catch(() => []);
      texts.forEach((text, j) => this.wakeIfReady(chunk[j]!, text));
    }
  }

  /** How long a chord's keys are kept: the results' expiry, and at least an hour. */
  private get chordExpiresSec(): number {
    return Math.max(this.expiresSec, 3600);
  }

  async chordStart(groupId: string, size: number, callbackId?: string): Promise<void> {
    const keys = chordKeys(groupId);
    // Without a callback id, the done marker stands in for its meta key (checked twice, harmlessly).
    const callbackMeta = callbackId === undefined ? keys.done : `${PREFIX}${callbackId}`;
    await celeryChordStartScript.run(this.client, { size: keys.size, done: keys.done, callbackMeta }, { size, expiresSec: this.chordExpiresSec });
  }

  async chordJoin(groupId: string, index: number, size: number, resultJson: string, withResults = true, taskId?: string): Promise<ChordJoin> {
    const args = { index, entry: chordEntry(taskId, resultJson), messageSize: size, expiresSec: this.chordExpiresSec, withResults: withResults ? 1 : 0 };
    const out = (await celeryChordJoinScript.run(this.client, chordKeys(groupId), args)) as Array<number | string>;
    if (out[0] !== 1) return { complete: false, first: false, results: [] };
    const join: ChordJoin = { complete: true, first: out[1] === 1, results: [] };
    if (!withResults) return join;
    const { results, failed } = unpackChord(out.slice(3));
    join.results = results;
    if (failed) join.failed = failed;
    return join;
  }

  async chordResults(groupId: string, size: number): Promise<unknown[] | { failed: ChordMemberFailure } | undefined> {
    const { results, failed } = unpackChord(await this.client.zrange(chordKeys(groupId).join, 0, -1, 'WITHSCORES'));
    if (results.length === 0 || results.length < size) return undefined;
    return failed ? { failed } : results;
  }

  async claimOnce(key: string): Promise<boolean> {
    return (await this.client.set(`fennel.claim.${key}`, '1', 'EX', Math.max(this.expiresSec, 3600), 'NX')) === 'OK';
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease> {
    const [current, remainingMs] = (await leaseScript.run(this.client, { lease: `${LEASE_PREFIX}${name}` }, { holder, ttlMs: Math.ceil(ttlMs) })) as [string, number];
    return { holder: current, expiresAt: new Date(Date.now() + Math.max(0, remainingMs)) };
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await leaseReleaseScript.run(this.client, { lease: `${LEASE_PREFIX}${name}` }, { holder });
  }

  async readLease(name: string): Promise<Lease | undefined> {
    const [holder, remainingMs] = (await this.client.multi().get(`${LEASE_PREFIX}${name}`).pttl(`${LEASE_PREFIX}${name}`).exec())!.map(([, value]) => value) as [string | null, number];
    return holder !== null && remainingMs > 0 ? { holder, expiresAt: new Date(Date.now() + remainingMs) } : undefined;
  }

  async putRecord(table: string, key: string, json: string): Promise<void> {
    await this.client.hset(`${RECORDS_PREFIX}${table}`, key, json);
  }

  async deleteRecord(table: string, key: string): Promise<void> {
    await this.client.hdel(`${RECORDS_PREFIX}${table}`, key);
  }

  async readRecords(table: string): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.client.hgetall(`${RECORDS_PREFIX}${table}`)));
  }

  async revoke(revocation: Revocation): Promise<void> {
    const expires = revocation.expiresAt.getTime();
    await this.client
      .multi()
      .zremrangebyscore(REVOKED, '-inf', Date.now())
      .zadd(REVOKED, expires, revocation.taskId)
      .publish(this.revokedChannel, JSON.stringify({ task_id: revocation.taskId, terminate: revocation.terminate, expires_at: expires }))
      .exec();
  }

  async watchRevocations(onRevoke: (revocation: Revocation) => void): Promise<() => Promise<void>> {
    const subscriber = this.subscriberConnection();
    this.revocationWatchers.add(onRevoke);
    try {
      if (this.revocationWatchers.size === 1) await subscriber.subscribe(this.revokedChannel);
      // Subscribed first, then read: a revocation made in between arrives one way or the other.
      await this.readRevocations([onRevoke]);
    } catch (error) {
      // The server is away: a worker starts anyway and waits for it. The subscriber's 'ready' subscribes and
      // reads the revocations in force once it is back. Any other failure (a database it lacks) is the caller's.
      if (!(error instanceof BrokerUnavailableError)) {
        this.revocationWatchers.delete(onRevoke);
        throw error;
      }
    }
    return async () => {
      this.revocationWatchers.delete(onRevoke);
      if (this.revocationWatchers.size === 0) await subscriber.unsubscribe(this.revokedChannel).catch(() => {});
    };
  }

  private async readRevocations(watchers = [...this.revocationWatchers]): Promise<void> {
    const flat = await this.client.zrangebyscore(REVOKED, Date.now(), '+inf', 'WITHSCORES');
    for (let i = 0; i < flat.length; i += 2) {
      const revocation = { taskId: flat[i]!, terminate: false, expiresAt: new Date(Number(flat[i + 1])) };
      for (const watcher of watchers) watcher(revocation);
    }
  }

  private onRevokedMessage(text: string): void {
    try {
      const doc = JSON.parse(text) as { task_id?: unknown; terminate?: unknown; expires_at?: unknown };
      if (typeof doc.task_id !== 'string') return;
      const revocation = { taskId: doc.task_id, terminate: doc.terminate === true, expiresAt: new Date(Number(doc.expires_at)) };
      for (const watcher of this.revocationWatchers) watcher(revocation);
    } catch {
      // not ours
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
