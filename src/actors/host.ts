// The actor host: what a worker started with `--actors` runs beside its pool. It constructs the actors placed on
// it, consumes each one's own queue (a few calls fetched ahead; with maxConcurrency 1, the default, they run one at
// a time in arrival order, each to its ack before the next starts), holds each one's lease in the result backend and renews it, and takes over actors whose host
// stopped renewing theirs (a restart: constructed again, from its last snapshot if it keeps them).
//
// Calls run in the worker's own process, not in a pool slot: an actor is state in memory, and a slot may be
// recycled or killed. A method that keeps the CPU busy holds up the worker's other work meanwhile.
//
// Exactly-once state with snapshots: after each call of an actor with `snapshot()`, the snapshot is stored with
// that call's id and outcome before the outcome is stored and the message acknowledged. A call delivered again
// whose id is the last snapshot's (its host died between the snapshot and the ack) is answered from the snapshot
// without running again; any earlier call was either applied to the snapshot or will be run from it.

import type { Logger } from 'pino';
import type { Fennel } from '../app/fennel.ts';
import { storeOutcome } from '../app/refs.ts';
import type { TaskRequest } from '../protocol/message.ts';
import { errorInfo, exceptionInfo, nowIso, type ExceptionInfo, type TaskMeta } from '../protocol/result.ts';
import { States } from '../protocol/states.ts';
import type { Delivery, Subscription } from '../transports/transport.ts';
import { ACTOR_CALL, ACTOR_CLOSE, ACTOR_START, ACTOR_STOP, type ActorDefinition } from './actor.ts';
import { ACTOR_LEASE_MS, actorLease, actorQueue, Names, SNAPSHOTS, type ActorEntry } from './names.ts';

/**
 * Calls of one actor fetched ahead of the one running (maxConcurrency 1): the next is at hand when one ends, rather
 * than a broker round trip away. They still run one at a time, in order; a host that dies hands them back.
 */
const FETCH_AHEAD = 16;
/** Renewals, heartbeats and the takeover scan, this often. */
const TICK_MS = 3_000;
/** A session instance unused this long is dropped (its proxy's owner went away without closing it). */
const SESSION_IDLE_MS = 10 * 60_000;

interface Hosted {
  entry: ActorEntry;
  definition: ActorDefinition;
  /** The instance of a `single` actor (and of a dead one: none). */
  instance: object | undefined;
  sessions: Map<string, { instance: object; usedAt: number }>;
  subscription: Subscription | undefined;
  /** The last call applied to the stored snapshot, and its outcome (single actors with snapshot()). */
  last: { callId: string; meta: TaskMeta } | undefined;
  calls: number;
  /** maxConcurrency 1: the call running now and those waiting behind it, in arrival order. */
  turn: Promise<void>;
}

interface Snapshot {
  state: unknown;
  callId: string | null;
  meta: TaskMeta | null;
}

export interface ActorHostOptions {
  app: Fennel;
  node: string;
  log: Logger;
}

export class ActorHost {
  private readonly app: Fennel;
  private readonly node: string;
  private readonly log: Logger;
  private readonly names: Names;
  private readonly hosted = new Map<string, Hosted>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> = Promise.resolve();
  private stopping = false;
  private calls = 0;
  /** Calls running now, so that stop() can wait for them. */
  private readonly running = new Set<Promise<void>>();

  constructor(options: ActorHostOptions) {
    this.app = options.app;
    this.node = options.node;
    this.log = options.log;
    this.names = new Names(() => this.app.backend);
  }

  /** Announces this host, takes over orphaned actors, and keeps doing both every few seconds. */
  async start(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => {
      this.ticking = this.ticking.then(() => this.tick()).catch((error: unknown) => this.log.warn({ err: error }, `actor host: ${(error as Error).message}`));
    }, TICK_MS);
    this.timer.unref();
  }

  /** True for the messages this host handles itself (not the pool). */
  static handles(taskName: string): boolean {
    return taskName === ACTOR_START || taskName === ACTOR_CALL || taskName === ACTOR_STOP || taskName === ACTOR_CLOSE;
  }

  /** Handles an actor message (start, call, close, stop), to its ack. Throws only if the outcome cannot be stored. */
  async handle(request: TaskRequest, delivery: Delivery): Promise<void> {
    const [id] = request.args as [unknown];
    if (typeof id !== 'string') return this.answer(request, delivery, failure('ActorError', `${request.name}: the first argument must be the actor's id`));
    switch (request.name) {
      case ACTOR_START:
        return this.answer(request, delivery, await this.startActor(id));
      case ACTOR_STOP:
        return this.answer(request, delivery, await this.stopActor(id));
      case ACTOR_CLOSE: {
        this.hosted.get(id)?.sessions.delete(String(request.args[1]));
        return this.answer(request, delivery, success(null));
      }
      default:
        return this.call(id, request, delivery);
    }
  }

  private async startActor(id: string): Promise<Outcome> {
    if (this.hosted.has(id)) return success({ host: this.node });
    const entry = await this.names.byId(id);
    if (!entry) return failure('ActorNotFoundError', `no actor ${id} in the name server (destroyed?)`);
    // The creator took the lease in this host's name; it may have lapsed while the start waited here, and another host
    // taken the actor over meanwhile: then it runs there, which is what create() asked for.
    const lease = await this.app.backend.acquireLease!(actorLease(id), this.node, ACTOR_LEASE_MS);
    if (lease.holder !== this.node) return success({ host: lease.holder });
    const error = await this.host(entry);
    return error ? failure(error.exc_type, String(error.exc_message[0])) : success({ host: this.node });
  }

  /** Actors being constructed here now: a start and a takeover of one actor never build two instances. */
  private readonly hosting = new Map<string, Promise<ExceptionInfo | undefined>>();

  /** Constructs `entry` here (restoring its snapshot), and consumes its queue. The lease is held already. */
  private host(entry: ActorEntry): Promise<ExceptionInfo | undefined> {
    if (this.hosted.has(entry.id)) return Promise.resolve(undefined);
    const pending = this.hosting.get(entry.id);
    if (pending) return pending;
    const building = this.build(entry).finally(() => this.hosting.delete(entry.id));
    this.hosting.set(entry.id, building);
    return building;
  }

  private async build(entry: ActorEntry): Promise<ExceptionInfo | undefined> {
    const definition = this.app.actorDefinitions.get(entry.className);
    if (!definition) {
      await this.app.backend.releaseLease?.(actorLease(entry.id), this.node);
      return exceptionInfo('ActorError', `this worker (${this.node}) has no actor class '${entry.className}'`, 'fennel');
    }
    const hosted: Hosted = { entry, definition, instance: undefined, sessions: new Map(), subscription: undefined, last: undefined, calls: 0, turn: Promise.resolve() };
    if (entry.state === 'alive' && entry.mode === 'single') {
      try {
        hosted.instance = construct(definition, entry.args);
        const snapshot = await this.readSnapshot(entry.id);
        if (snapshot && typeof (hosted.instance as { restore?: unknown }).restore === 'function') {
          await (hosted.instance as { restore(state: unknown): unknown }).restore(snapshot.state);
          if (snapshot.callId && snapshot.meta) hosted.last = { callId: snapshot.callId, meta: snapshot.meta };
        }
      } catch (error) {
        await this.app.backend.releaseLease?.(actorLease(entry.id), this.node);
        return errorInfo(error).info;
      }
    }
    if (entry.host !== this.node || entry.hostedAt === undefined) await this.names.put((entry = { ...entry, host: this.node, hostedAt: entry.hostedAt ?? new Date().toISOString() }));
    hosted.entry = entry;
    this.hosted.set(entry.id, hosted);
    const prefetch = entry.maxConcurrency === 1 ? FETCH_AHEAD : entry.maxConcurrency;
    hosted.subscription = await this.app.transport.consume({ queues: [actorQueue(entry.id)], prefetch }, (delivery) => this.onDelivery(delivery));
    this.log.info({ actor: entry.id, name: entry.name, class: entry.className, restarts: entry.restarts }, `actor ${entry.className} '${entry.name}' hosted here${entry.restarts ? ` (restart ${entry.restarts})` : ''}`);
    await this.announce();
    return undefined;
  }

  /** Deliveries of an actor's own queue: through the worker's executor (signature, decoding, revocations). */
  onDelivery: (delivery: Delivery) => void = () => {};

  private async stopActor(id: string): Promise<Outcome> {
    const hosted = this.hosted.get(id);
    const entry = hosted?.entry ?? (await this.names.byId(id));
    if (hosted) await this.drop(id);
    if (entry) await this.names.remove(entry);
    await this.app.backend.releaseLease?.(actorLease(id), this.node);
    return success(null);
  }

  /** Stops hosting `id` here (its subscription and instance), without touching its entry. */
  private async drop(id: string): Promise<void> {
    const hosted = this.hosted.get(id);
    if (!hosted) return;
    this.hosted.delete(id);
    await hosted.subscription?.cancel();
    if (!this.stopping) await this.announce();
  }

  private async call(id: string, request: TaskRequest, delivery: Delivery): Promise<void> {
    const hosted = this.hosted.get(id);
    if (!hosted) {
      // Its lease moved on (this host lost it): the call goes back for the host that holds it now.
      await delivery.reject({ requeue: true });
      return;
    }
    // One at a time unless maxConcurrency allows more (the prefetch bounds those): handle() is reached in delivery
    // order (the executor's checks before it are synchronous), so the chain keeps the queue's order.
    let run: Promise<void>;
    if (hosted.entry.maxConcurrency === 1) {
      run = hosted.turn.then(() => this.runCall(hosted, request, delivery));
      // A call that fails to store its outcome (handed back by the executor) does not stop the ones behind it.
      hosted.turn = run.catch(() => {});
    } else run = this.runCall(hosted, request, delivery);
    this.running.add(run);
    try {
      await run;
    } finally {
      this.running.delete(run);
    }
  }

  private async runCall(hosted: Hosted, request: TaskRequest, delivery: Delivery): Promise<void> {
    const { entry } = hosted;
    if (entry.state === 'dead') return this.answer(request, delivery, failure('ActorDiedError', `actor ${entry.className} '${entry.name}' died with its host and was created with restart: false`));
    // Applied already (its host died after the snapshot, before the ack): its outcome, not a second run.
    if (hosted.last?.callId === request.id) return this.store(request, delivery, hosted.last.meta);
    const [, method, args, session] = request.args as [string, unknown, unknown, unknown];
    if (typeof method !== 'string' || !hosted.definition.methods.has(method)) return this.answer(request, delivery, failure('ActorMethodError', `actor class '${entry.className}' has no method ${JSON.stringify(method)}`));
    if (!Array.isArray(args)) return this.answer(request, delivery, failure('ActorError', `the arguments of ${entry.className}.${method} must be an array`));
    let instance: object;
    try {
      instance = this.instanceFor(hosted, typeof session === 'string' ? session : undefined);
    } catch (error) {
      const { info, traceback } = errorInfo(error);
      return this.answer(request, delivery, { status: States.FAILURE, result: info, traceback });
    }
    let outcome: Outcome;
    try {
      outcome = success(await (instance as Record<string, (...a: unknown[]) => unknown>)[method]!(...(args as unknown[])));
    } catch (error) {
      const { info, traceback } = errorInfo(error);
      outcome = { status: States.FAILURE, result: info, traceback };
    }
    hosted.calls++;
    this.calls++;
    const meta = metaOf(request, outcome, this.node);
    const snapshotting = entry.mode === 'single' && typeof (instance as { snapshot?: unknown }).snapshot === 'function';
    if (snapshotting) {
      const state = await (instance as { snapshot(): unknown }).snapshot();
      const snapshot: Snapshot = { state, callId: request.id, meta };
      await this.app.backend.putRecord!(SNAPSHOTS, entry.id, JSON.stringify(snapshot));
      hosted.last = { callId: request.id, meta };
    }
    return this.store(request, delivery, meta);
  }

  private instanceFor(hosted: Hosted, session: string | undefined): object {
    const { entry, definition } = hosted;
    if (entry.mode === 'single') return hosted.instance!;
    if (entry.mode === 'percall') return construct(definition, entry.args);
    if (session === undefined) throw new Error(`actor ${entry.className} '${entry.name}' is a session actor: call it through a proxy (it has a session)`);
    const now = Date.now();
    let found = hosted.sessions.get(session);
    if (!found) hosted.sessions.set(session, (found = { instance: construct(definition, entry.args), usedAt: now }));
    found.usedAt = now;
    return found.instance;
  }

  private async answer(request: TaskRequest, delivery: Delivery, outcome: Outcome): Promise<void> {
    return this.store(request, delivery, metaOf(request, outcome, this.node));
  }

  private async store(request: TaskRequest, delivery: Delivery, meta: TaskMeta): Promise<void> {
    if (!request.ignoreResult) await storeOutcome(this.app, { ...meta, task_id: request.id }, delivery.redelivered);
    await delivery.ack();
  }

  private async readSnapshot(id: string): Promise<Snapshot | undefined> {
    const json = (await this.app.backend.readRecords!(SNAPSHOTS)).get(id);
    return json === undefined ? undefined : (JSON.parse(json) as Snapshot);
  }

  /** Renews leases (dropping actors another host took), announces this host, and takes over orphans. */
  private async tick(): Promise<void> {
    if (this.stopping) return;
    const backend = this.app.backend;
    for (const [id, hosted] of this.hosted) {
      const lease = await backend.acquireLease!(actorLease(id), this.node, ACTOR_LEASE_MS);
      if (lease.holder !== this.node) {
        this.log.warn({ actor: id }, `actor '${hosted.entry.name}' is hosted by ${lease.holder} now (this host missed its renewals); dropped here`);
        await this.drop(id);
      }
      const now = Date.now();
      for (const [session, { usedAt }] of hosted.sessions) if (now - usedAt > SESSION_IDLE_MS) hosted.sessions.delete(session);
    }
    await this.announce();
    await this.takeOver();
  }

  /** Tells the name server this host is alive and how loaded: every tick, and at once when its actors change (placement reads it). */
  private async announce(): Promise<void> {
    const callsByActor = Object.fromEntries([...this.hosted].map(([id, hosted]) => [id, hosted.calls]));
    await this.names.announceHost({ node: this.node, at: Date.now(), classes: [...this.app.actorDefinitions.keys()], actors: this.hosted.size, calls: this.calls, callsByActor });
  }

  /** Actors whose host stopped renewing their lease: restarted here (or declared dead) by whichever host wins the lease. */
  private async takeOver(): Promise<void> {
    const backend = this.app.backend;
    for (const entry of await this.names.entries()) {
      if (this.hosted.has(entry.id) || this.hosting.has(entry.id) || !this.app.actorDefinitions.has(entry.className)) continue;
      // The creator holds the lease in the placed host's name until that host starts it: a lapsed lease is a host
      // that died, or a start that waited longer than the lease behind a busy host's work.
      if (await backend.readLease!(actorLease(entry.id))) continue;
      const lease = await backend.acquireLease!(actorLease(entry.id), this.node, ACTOR_LEASE_MS);
      if (lease.holder !== this.node) continue;
      let next: ActorEntry = { ...entry, host: this.node };
      const placing = entry.hostedAt === undefined;
      if (placing) {
        // Never constructed: this is its placement, moved here, not a restart.
      } else if (entry.state === 'alive' && (!entry.restart || entry.restarts >= entry.maxRestarts)) next = { ...next, state: 'dead' };
      else if (entry.state === 'alive') next = { ...next, restarts: entry.restarts + 1 };
      await this.names.put(next);
      const what = placing ? `was not started by ${entry.host} within ${ACTOR_LEASE_MS / 1000} s: placed here instead` : next.state === 'dead' ? `lost its host ${entry.host}: dead (restart ${entry.restart ? `limit ${entry.maxRestarts} reached` : 'false'}); its calls fail with ActorDiedError` : `lost its host ${entry.host}: restarting it here`;
      this.log.warn({ actor: entry.id, from: entry.host }, `actor '${entry.name}' ${what}`);
      const error = await this.host(next);
      if (error) this.log.error({ actor: entry.id }, `could not restart actor '${entry.name}': ${String(error.exc_message[0])}`);
    }
  }

  /** Warm stop: no new calls, running ones finish (up to `graceMs`), leases released so another host takes over at once. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    await this.ticking;
    for (const hosted of this.hosted.values()) await hosted.subscription?.cancel();
    await Promise.race([Promise.all(this.running), new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
    for (const id of this.hosted.keys()) await this.app.backend.releaseLease?.(actorLease(id), this.node);
    this.hosted.clear();
    await this.names.withdrawHost(this.node).catch(() => {});
  }

  /** What the worker's inspect and the dashboard show. */
  describe(): Array<{ id: string; name: string; className: string; calls: number }> {
    return [...this.hosted.values()].map((h) => ({ id: h.entry.id, name: h.entry.name, className: h.entry.className, calls: h.calls }));
  }
}

type Outcome = { status: string; result: unknown; traceback: string | null };

function success(result: unknown): Outcome {
  return { status: States.SUCCESS, result, traceback: null };
}

function failure(name: string, message: string): Outcome {
  return { status: States.FAILURE, result: exceptionInfo(name, message, 'fennel'), traceback: null };
}

function metaOf(request: TaskRequest, outcome: Outcome, node: string): TaskMeta {
  return { ...outcome, children: [], date_done: nowIso(), task_id: request.id, name: request.name, worker: node };
}

function construct(definition: ActorDefinition, args: unknown[]): object {
  return new definition.cls(...args);
}
