// nats://host:port[?prefix=…&replicas=…] — results on NATS JetStream key-value buckets (server 2.9 or later).
//
// Two buckets, named from the URL's prefix (default `fennel`), each a stream `KV_<name>` keeping one value per key:
//
//   <prefix>_results   TTL = resultExpiresSec (the stream's max_age; 0: none). What expires with the results:
//     meta.<id>              a task's meta (encodeMeta, Celery's layout, `status` first), or a pinned object's marker
//     chord.<group>[.<i>]    a chord's join and its members' results (nats/chords.ts)
//     parked.<id>            parked calls (object references, nats/refs.ts); the ids parked on a task follow its meta
//     claim.<key>            once-only markers (claimOnce)
//   <prefix>_state     no TTL. What must outlive the results, each with a time of its own where it has one:
//     revoked.<id>           {terminate, expires_at}: skipped once past its time, and deleted by a worker that starts
//     lease.<name>           {holder, expires_at}
//     record.<table>.<key>   a record's JSON (the name server, beat's state)
//     pinned.<id>, pin-expiry.<id>   app.put's pinned objects (storeFor) and their times, swept hourly
//
// Ids and names are key tokens (clients/nats/kv.ts keyToken: UUIDs unchanged, other bytes escaped as =XX).
// Key-value has no per-key TTL before NATS 2.11, hence the state bucket and its stored times.
//
// Every read-modify-write is a compare-and-set on one key (nats/cas.ts): a store never replaces a SUCCESS, a chord's
// join completes once, a call is released once, a lease has one holder. Waiters are woken by one KV watch per
// process of every result key (nats/watch.ts), writes only, started with the first wait and stopped once nothing has
// been waited for WATCH_IDLE_MS: a wait reads its key once the watch is up, so a result stored before that read is
// read, and one stored after it arrives by the watch; no one polls. A watch per waited id (the first version) made
// the server create and delete a consumer per result, 2 to 5 ms of its CPU each: 220 results a second, and waits
// timing out under a few hundred at once. The price of one watch: every result stored reaches every process that
// waits, and each drops those it does not wait for. A wait for an id this process made and sent while the watch was
// up (expectResult) skips the read: its result cannot have been stored before the watch started.

import { LRUCache } from 'lru-cache';
import { BrokerUnavailableError, ClosedError, FennelError, ProtocolError, asBrokerUnavailable } from '../errors.ts';
import { NatsLink, type NatsHandles } from '../clients/nats/connection.ts';
import { fromKeyToken, openBucket, purgeKey, snapshot, type KV } from '../clients/nats/kv.ts';
import { decodeMeta, encodeMeta, pendingMeta, type TaskMeta } from '../protocol/result.ts';
import { isReady, States } from '../protocol/states.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import type { ChordJoin, Lease, ParkOutcome, ReleasedCall, ResultBackend, Revocation, WaitOptions } from './backend.ts';
import { CasKeys } from './nats/cas.ts';
import { chordJoin, chordResults, type ChordStore } from './nats/chords.ts';
import { dependentsOf, isPinnedMarker, metaPart, pinnedMarker, resultKeys, stateKeys, statusOf, withDependents } from './nats/keys.ts';
import { park, settle, type RefsStore } from './nats/refs.ts';
import { follow, type Follow } from './nats/watch.ts';
import { Waiters } from './waiters.ts';

export interface NatsBackendOptions {
  /** The results bucket's TTL (Celery's `result_expires`); 0 keeps results until forgotten. */
  resultExpiresSec?: number;
  /** How long the first connection, and then each request, waits for the servers before BrokerUnavailableError. */
  connectTimeoutMs?: number;
}

interface Buckets {
  handles: NatsHandles;
  results: KV;
  state: KV;
}

/** countByState reads at most this many results. */
const COUNT_LIMIT = 100_000;
/** How often a process that pins objects sweeps those past their time. */
const PIN_SWEEP_MS = 3_600_000;
/** How long the result watch stays up after the last wait ended (a producer waits again soon, usually). */
const WATCH_IDLE_MS = 30_000;
/** Sent ids remembered as having no result yet (expectResult); past it, the oldest are forgotten. */
const FRESH_MAX = 100_000;

const decoder = new TextDecoder();

export class NatsBackend implements ResultBackend {
  /** The URL with any password masked. */
  readonly url: string;
  private readonly link: NatsLink;
  private readonly names: { results: string; state: string };
  private readonly expiresSec: number;
  private opening: Promise<Buckets> | undefined;
  private closed = false;
  /** Read-modify-writes of each bucket's keys. */
  private readonly resultCas = new CasKeys(() => this.buckets().then((b) => b.results), 'the NATS results bucket');
  private readonly stateCas = new CasKeys(() => this.buckets().then((b) => b.state), 'the NATS state bucket');
  // The last waiter of an id gone (woken, timed out, aborted): its watch is stopped.
  private readonly waiters = new Waiters(undefined, (taskId) => this.unwatch(taskId));
  /** The watch of every result key, while this process waits (see the top of this file). */
  private resultWatch: Follow | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Result key → task id, for every id waited for now. */
  private readonly waitedKeys = new Map<string, string>();
  /** The result watch is up: every write from now on is delivered to it (false while it opens, or was lost). */
  private watchUp = false;
  /**
   * Result keys of ids this process is about to send (expectResult) while the watch was up, not yet waited for and
   * not written since: nothing was stored under them before the watch started, so a wait needs no first read.
   * Cleared whenever the watch is lost; the oldest are forgotten past FRESH_MAX (their waits then read).
   */
  private readonly freshKeys = new LRUCache<string, true>({ max: FRESH_MAX });
  private readonly revocationFollows = new Set<Follow>();
  private lastPinSweep = 0;
  /** What park, settle and the chord join need of this backend. */
  private readonly refs: RefsStore & ChordStore = {
    memberReads: new Map(),
    keys: this.resultCas,
    read: async (key) => text(await (await this.buckets()).results.get(key)),
    stateOf: async (taskId) => {
      const stored = text(await (await this.buckets()).results.get(resultKeys.meta(taskId)));
      return stored !== undefined ? statusOf(stored) : (await this.readPinned(taskId))?.status;
    },
    storeMeta: (meta) => this.storeMeta(meta),
  };

  constructor(url: string, options: NatsBackendOptions = {}) {
    this.link = new NatsLink(url, { connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, name: `fennel result backend ${process.pid}` });
    this.url = this.link.url.safeUrl;
    this.expiresSec = options.resultExpiresSec ?? 86_400;
    const { prefix } = this.link.url;
    this.names = { results: `${prefix}_results`, state: `${prefix}_state` };
  }

  /** The connection and both buckets, opened on first use (a failed opening is tried again by the next call). */
  private buckets(): Promise<Buckets> {
    if (this.closed) return Promise.reject(new ClosedError(`the result backend ${this.url}`));
    if (!this.opening) {
      this.opening = this.openBuckets();
      this.opening.catch(() => (this.opening = undefined));
    }
    return this.opening;
  }

  private async openBuckets(): Promise<Buckets> {
    const handles = await this.link.handles();
    const { replicas } = this.link.url;
    const [results, state] = await Promise.all([openBucket(handles, this.names.results, { ttlSec: this.expiresSec, replicas }), openBucket(handles, this.names.state, { ttlSec: 0, replicas })]);
    void this.recheckOnReconnect(handles);
    return { handles, results, state };
  }

  /**
   * Any error but Fennel's own is the server's: BrokerUnavailableError naming the URL. A value over the server's
   * max_payload (1 MB unless configured) is the caller's, and says so.
   */
  private async guard<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (error) {
      if (error instanceof Error && /max_payload/i.test(error.message)) {
        throw new FennelError(`${this.url}: a value is larger than the NATS server's max_payload (1 MB unless its configuration raises it): raise max_payload in the server's configuration, or keep values that large out of the results`, { cause: error });
      }
      throw asBrokerUnavailable(this.url, error);
    }
  }

  // --- results -------------------------------------------------------------------------------------------------

  store(meta: TaskMeta): Promise<void> {
    return this.guard(this.storeMeta(meta).then(() => undefined));
  }

  /**
   * Writes a meta unless a SUCCESS is stored (Celery's rule); resolves with the state that stands. Stores of one id
   * by this process are applied in the order they were called (cas.ts queues them per key).
   */
  private storeMeta(meta: TaskMeta): Promise<{ status: string; dependents: string[] }> {
    const encoded = encode(meta);
    // The calls parked on the task stay with its meta (nats/refs.ts), and settle releases them.
    return this.resultCas.change(resultKeys.meta(meta.task_id), (current) => {
      const dependents = dependentsOf(current);
      if (statusOf(current) === States.SUCCESS) return { result: { status: States.SUCCESS, dependents } };
      return { next: withDependents(encoded, dependents), result: { status: meta.status, dependents }, settled: isReady(meta.status) };
    });
  }

  /**
   * app.put's pinned objects: the meta in the state bucket with its time (the results bucket's TTL would take it),
   * then a marker under its result key, which wakes its waiters and sends readers to the state bucket.
   */
  async storeFor(meta: TaskMeta, ttlSec: number): Promise<void> {
    await this.guard(
      (async () => {
        const { state } = await this.buckets();
        const keepUntil = ttlSec === 0 ? 0 : Date.now() + ttlSec * 1000;
        await state.put(stateKeys.pinned(meta.task_id), `${keepUntil}\n${encode(meta)}`);
        if (keepUntil !== 0) await state.put(stateKeys.pinExpiry(meta.task_id), String(keepUntil));
        const marker = pinnedMarker(meta.status);
        await this.resultCas.change(resultKeys.meta(meta.task_id), (current) => (statusOf(current) === States.SUCCESS ? { result: undefined } : { next: marker, result: undefined }));
      })(),
    );
    if (Date.now() - this.lastPinSweep > PIN_SWEEP_MS) {
      this.lastPinSweep = Date.now();
      void this.sweepPins().catch(() => {});
    }
  }

  /** Deletes the pinned objects past their time (their small pin-expiry keys are read, not the objects). */
  private async sweepPins(): Promise<void> {
    const { handles, state } = await this.buckets();
    const now = Date.now();
    for (const { key, value } of await snapshot(state, stateKeys.allPinExpiries)) {
      if (Number(decoder.decode(value)) > now) continue;
      const taskId = fromKeyToken(key.slice(key.indexOf('.') + 1));
      await purgeKey(handles, this.names.state, stateKeys.pinned(taskId));
      await purgeKey(handles, this.names.state, key);
    }
  }

  get(taskId: string): Promise<TaskMeta | undefined> {
    return this.guard(this.read(taskId));
  }

  private async read(taskId: string): Promise<TaskMeta | undefined> {
    const stored = text(await (await this.buckets()).results.get(resultKeys.meta(taskId)));
    if (stored !== undefined && !isPinnedMarker(stored)) return this.decode(taskId, metaPart(stored));
    // A marker, or nothing: a pinned object kept longer than the results outlives its marker.
    return this.readPinned(taskId);
  }

  /** A pinned object, unless it is past its time (the sweep deletes it later). */
  private async readPinned(taskId: string): Promise<TaskMeta | undefined> {
    const stored = text(await (await this.buckets()).state.get(stateKeys.pinned(taskId)));
    if (stored === undefined) return undefined;
    const newline = stored.indexOf('\n');
    const keepUntil = Number(stored.slice(0, newline));
    if (newline < 0 || !Number.isFinite(keepUntil)) throw new ProtocolError(`the pinned object ${taskId} in ${this.url} is not '<keep until>\\n<meta>': ${stored.slice(0, 100)}`);
    if (keepUntil !== 0 && keepUntil <= Date.now()) return undefined;
    return this.decode(taskId, stored.slice(newline + 1));
  }

  private decode(taskId: string, stored: string): TaskMeta {
    try {
      return decodeMeta(stored);
    } catch (error) {
      throw new ProtocolError(`the result of task ${taskId} in ${this.url} is not a task's meta (JSON): ${stored.slice(0, 100)}`, { cause: error });
    }
  }

  /**
   * The producer is about to send a call under `taskId`, an id it made: while the watch is up, nothing can be stored
   * under it before the watch delivers it, so its wait skips the first read (a round trip per result, and the
   * server's work for it). Does nothing while no watch is up: a process that never waits never starts one.
   */
  expectResult(taskId: string): void {
    if (!this.watchUp) return;
    this.freshKeys.set(resultKeys.meta(taskId), true);
  }

  wait(taskId: string, options: WaitOptions): Promise<TaskMeta | undefined> {
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    const waiting = this.waiters.add(taskId, options);
    const key = resultKeys.meta(taskId);
    if (!this.waitedKeys.has(key)) {
      this.waitedKeys.set(key, taskId);
      if (this.freshKeys.delete(key) && this.watchUp) clearTimeout(this.idleTimer);
      else this.startWaiting(taskId);
    }
    return waiting;
  }

  /** Once the watch is up, the id's result as it stands (a write after this read comes by the watch). */
  private startWaiting(taskId: string): void {
    clearTimeout(this.idleTimer);
    const watch = (this.resultWatch ??= this.watchResults());
    watch.started.then(
      () => this.wakeWith(taskId, this.read(taskId)),
      (error: unknown) => {
        // The first attempt failed (the server is away): these waits fail, and the next wait tries afresh.
        if (this.resultWatch === watch) {
          this.resultWatch = undefined;
          void watch.stop();
        }
        this.waiters.reject(taskId, asBrokerUnavailable(this.url, error));
      },
    );
  }

  private watchResults(): Follow {
    return follow(
      () => this.buckets().then((b) => b.results),
      resultKeys.allMetas,
      (entry) => {
        const taskId = this.waitedKeys.get(entry.key);
        if (taskId !== undefined) {
          if (entry.operation === 'PUT') this.onStored(taskId, entry.string());
        } else if (this.freshKeys.size > 0) this.freshKeys.delete(entry.key); // written now: a wait for it reads
      },
      {
        updatesOnly: true,
        // A watch opened again after it was lost missed what was written meanwhile: every waited key is read again.
        onOpen: (reopened) => {
          this.watchUp = true;
          if (reopened) for (const taskId of this.waitedKeys.values()) this.wakeWith(taskId, this.read(taskId));
        },
        onLost: () => this.lostWatch(),
      },
    );
  }

  /** Writes from now until the watch is up again are not delivered: no sent id is known to have no result. */
  private lostWatch(): void {
    this.watchUp = false;
    this.freshKeys.clear();
  }

  /** The last waiter of an id gone: its key is dropped, and the watch stopped once none has been waited for a while. */
  private unwatch(taskId: string): void {
    this.waitedKeys.delete(resultKeys.meta(taskId));
    if (this.waitedKeys.size > 0 || !this.resultWatch) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.waitedKeys.size > 0 || !this.resultWatch) return;
      void this.resultWatch.stop();
      this.resultWatch = undefined;
      this.lostWatch();
    }, WATCH_IDLE_MS);
    this.idleTimer.unref();
  }

  private onStored(taskId: string, stored: string): void {
    if (isPinnedMarker(stored)) return this.wakeWith(taskId, this.readPinned(taskId));
    let meta: TaskMeta;
    try {
      meta = this.decode(taskId, metaPart(stored));
    } catch (error) {
      // Not a meta: its waiters are told so now rather than left to time out.
      return this.waiters.reject(taskId, error);
    }
    if (isReady(meta.status)) this.waiters.wake(taskId, meta);
  }

  private wakeWith(taskId: string, reading: Promise<TaskMeta | undefined>): void {
    reading.then(
      (meta) => {
        if (meta && isReady(meta.status)) this.waiters.wake(taskId, meta);
      },
      (error: unknown) => this.waiters.reject(taskId, asBrokerUnavailable(this.url, error)),
    );
  }

  /** After a reconnection, every waited key is read again (a watch's consumer may have missed writes meanwhile). */
  private async recheckOnReconnect(handles: NatsHandles): Promise<void> {
    for await (const status of handles.nc.status()) {
      if (status.type !== 'reconnect') continue;
      this.freshKeys.clear(); // the watch may have missed writes while disconnected
      for (const taskId of [...this.waiters.ids()]) this.wakeWith(taskId, this.read(taskId));
    }
  }

  async forget(taskId: string): Promise<void> {
    await this.guard(
      (async () => {
        const { handles, results, state } = await this.buckets();
        const key = resultKeys.meta(taskId);
        const stored = text(await results.get(key));
        const status = statusOf(stored);
        if (stored !== undefined && status !== undefined && !isReady(status) && dependentsOf(stored).length > 0) {
          // Calls are parked on it: its state is forgotten, not them (its outcome, once stored, releases them).
          await this.resultCas.change(key, (current) => {
            const now = statusOf(current);
            return now === undefined || isReady(now) ? { result: undefined } : { next: withDependents(encode(pendingMeta(taskId)), dependentsOf(current)), result: undefined };
          });
          return;
        }
        // Purged rather than deleted: a delete leaves a marker, kept for ever where there is no TTL.
        if (stored !== undefined) await purgeKey(handles, this.names.results, key);
        this.resultCas.forget(key);
        if (stored !== undefined && !isPinnedMarker(stored)) return;
        if ((await state.get(stateKeys.pinned(taskId))) === null) return;
        await purgeKey(handles, this.names.state, stateKeys.pinned(taskId));
        await purgeKey(handles, this.names.state, stateKeys.pinExpiry(taskId));
      })(),
    );
  }

  /** Reads every stored result (at most 100,000): the values travel, so it costs what they weigh. */
  async countByState(): Promise<Record<string, number>> {
    const { results } = await this.guard(this.buckets());
    const counts: Record<string, number> = {};
    for (const { value } of await this.guard(snapshot(results, resultKeys.allMetas, COUNT_LIMIT))) {
      const status = statusOf(decoder.decode(value));
      // PENDING is stored only to hold the calls parked on a task that has stored nothing yet: not a result.
      if (status && status !== States.PENDING) counts[status] = (counts[status] ?? 0) + 1;
    }
    return counts;
  }

  // --- chords, object references, claims -------------------------------------------------------------------------

  chordJoin(groupId: string, index: number, size: number, resultJson: string, withResults = true): Promise<ChordJoin> {
    return this.guard(chordJoin(this.refs, groupId, index, size, resultJson, withResults));
  }

  chordResults(groupId: string, size: number): Promise<unknown[] | undefined> {
    return this.guard(chordResults(this.refs, groupId, size));
  }

  park(taskId: string, inputs: readonly string[], callJson: string): Promise<ParkOutcome> {
    return this.guard(park(this.refs, taskId, inputs, callJson));
  }

  settle(meta: TaskMeta): Promise<ReleasedCall[]> {
    return this.guard(settle(this.refs, meta));
  }

  claimOnce(key: string): Promise<boolean> {
    return this.guard(this.resultCas.change(resultKeys.claim(key), (current) => (current === undefined ? { next: '1', result: true } : { result: false })));
  }

  // --- revocations -------------------------------------------------------------------------------------------------

  async revoke(revocation: Revocation): Promise<void> {
    const value = JSON.stringify({ terminate: revocation.terminate, expires_at: revocation.expiresAt.getTime() });
    await this.guard(this.buckets().then((b) => b.state.put(stateKeys.revoked(revocation.taskId), value)));
  }

  /**
   * A watch of every revocation key: those in force when it starts, then each new one. One past its time is
   * skipped, and deleted when the watch starts (every worker start sweeps them).
   */
  async watchRevocations(onRevoke: (revocation: Revocation) => void): Promise<() => Promise<void>> {
    let stopped = false;
    const watch = follow(
      () => this.buckets().then((b) => b.state),
      stateKeys.allRevoked,
      (entry) => {
        if (stopped || entry.operation !== 'PUT') return;
        const revocation = this.parseRevocation(entry.key, entry.string());
        if (!revocation) return;
        if (revocation.expiresAt.getTime() > Date.now()) onRevoke(revocation);
        else if (!entry.isUpdate) void this.buckets().then((b) => purgeKey(b.handles, this.names.state, entry.key)).catch(() => {});
      },
    );
    this.revocationFollows.add(watch);
    const stop = async (): Promise<void> => {
      stopped = true;
      this.revocationFollows.delete(watch);
      await watch.stop();
    };
    try {
      await watch.started;
    } catch (error) {
      // The server is away or slow (a bucket made in a cluster under load can take longer than connectTimeoutMs): a
      // worker starts anyway, and the watch opens (reporting the revocations in force) once it can; closed
      // meanwhile, there is nothing to watch. What Fennel cannot use (a ConfigError) is the caller's.
      if (this.closed) return stop;
      const failure = asBrokerUnavailable(this.url, error);
      if (!(failure instanceof BrokerUnavailableError)) {
        await stop();
        throw failure;
      }
    }
    return stop;
  }

  private parseRevocation(key: string, stored: string): Revocation | undefined {
    try {
      const doc = JSON.parse(stored) as { terminate?: unknown; expires_at?: unknown };
      if (typeof doc.expires_at !== 'number') return undefined;
      return { taskId: fromKeyToken(key.slice(key.indexOf('.') + 1)), terminate: doc.terminate === true, expiresAt: new Date(doc.expires_at) };
    } catch {
      return undefined; // not a revocation Fennel wrote: ignored, as Redis's watcher ignores a foreign message
    }
  }

  // --- leases and records --------------------------------------------------------------------------------------------

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease> {
    const lease = await this.guard(
      this.stateCas.change(stateKeys.lease(name), (current) => {
        const now = Date.now();
        const held = parseLease(current);
        if (held && held.expires_at > now && held.holder !== holder) return { result: held };
        const taken = { holder, expires_at: now + ttlMs };
        return { next: JSON.stringify(taken), result: taken };
      }),
    );
    return { holder: lease.holder, expiresAt: new Date(lease.expires_at) };
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.guard(this.stateCas.change(stateKeys.lease(name), (current) => (parseLease(current)?.holder === holder ? { next: null, result: undefined } : { result: undefined })));
  }

  async readLease(name: string): Promise<Lease | undefined> {
    const { state } = await this.guard(this.buckets());
    const lease = parseLease(text(await this.guard(state.get(stateKeys.lease(name)))));
    return lease && lease.expires_at > Date.now() ? { holder: lease.holder, expiresAt: new Date(lease.expires_at) } : undefined;
  }

  async putRecord(table: string, key: string, json: string): Promise<void> {
    await this.guard(this.buckets().then((b) => b.state.put(stateKeys.record(table, key), json)));
  }

  async deleteRecord(table: string, key: string): Promise<void> {
    await this.guard(this.buckets().then((b) => purgeKey(b.handles, this.names.state, stateKeys.record(table, key))));
  }

  async readRecords(table: string): Promise<Map<string, string>> {
    const { state } = await this.guard(this.buckets());
    const entries = await this.guard(snapshot(state, stateKeys.records(table)));
    // record.<table>.<key>: the key is the token after the second '.'.
    return new Map(entries.map(({ key, value }) => [fromKeyToken(key.slice(key.indexOf('.', key.indexOf('.') + 1) + 1)), decoder.decode(value)]));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    const follows = [...(this.resultWatch ? [this.resultWatch] : []), ...this.revocationFollows];
    this.resultWatch = undefined;
    this.lostWatch();
    this.waitedKeys.clear();
    this.revocationFollows.clear();
    this.waiters.wakeAll();
    // Their consumers deleted before the connection goes (each request bounded by connectTimeoutMs).
    await Promise.all(follows.map((watch) => watch.stop()));
    await this.link.close();
  }
}

/** The meta as stored: `status` first, whatever the order of the object given (statusOf reads the first). */
function encode(meta: TaskMeta): string {
  const { status, ...rest } = meta;
  return encodeMeta({ status, ...rest });
}

/** A KV entry's value, undefined for none or a deleted key. */
function text(entry: { operation: string; string(): string } | null): string | undefined {
  return entry && entry.operation === 'PUT' ? entry.string() : undefined;
}

function parseLease(stored: string | undefined): { holder: string; expires_at: number } | undefined {
  if (stored === undefined) return undefined;
  const lease = JSON.parse(stored) as { holder?: unknown; expires_at?: unknown };
  if (typeof lease.holder !== 'string' || typeof lease.expires_at !== 'number') throw new ProtocolError(`a lease is not {holder, expires_at}: ${stored.slice(0, 100)}`);
  return lease as { holder: string; expires_at: number };
}
