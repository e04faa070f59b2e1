// The transport contract: what every broker engine (memory, sqlite, later redis and amqp) provides.
// Engines implement storage and hand-out; the semantics above them (routing, acks after store, retries)
// live once in app/ and worker/. A transport is done when test/conformance/transport.suite.ts passes.

import type { JoinableWrite } from '../clients/sqlite-file.ts';
import type { WireMessage } from '../protocol/message.ts';

export interface TransportCapabilities {
  /** Messages published with `delayUntil` stay invisible until then, inside the broker. */
  delayedDelivery: boolean;
  /** Higher-priority messages in a queue are handed out first. */
  priorities: boolean;
  /** Producers and consumers in different processes share it. */
  crossProcess: boolean;
  /** `Route.deduplicate` is honoured atomically. */
  deduplication?: boolean;
  /** `Route.broadcast` and `ConsumeOptions.broadcast`: one copy of a message for every consumer online. */
  broadcast?: boolean;
}

export interface Route {
  queue: string;
  priority?: number;
  /** Not handed out before this time (countdown / eta). */
  delayUntil?: Date | null;
  /**
   * Publish only if no message with this task id, published with `deduplicate`, is still pending (waiting,
   * scheduled or held); otherwise do nothing. The id is released when that message is acked or dead-lettered.
   * Only on engines with the `deduplication` capability. The message carries the header `fennel_dedupe`.
   * `{ ttlMs }`: publish only if no message with this task id was published so within `ttlMs`, whether or not it
   * has run since (the id is not freed when the message settles; the message carries no header). Beat's fires.
   */
  deduplicate?: boolean | { ttlMs: number };
  /**
   * `queue` is a broadcast queue: every consumer consuming it now (`ConsumeOptions.broadcast`) gets a copy of the
   * message, acknowledged on its own; a consumer that starts later gets none (Celery's `Broadcast` queues). Only on
   * engines with the `broadcast` capability; not with `deduplicate`.
   */
  broadcast?: boolean;
}

/** Marks a message published with `deduplicate`, so its consumer releases the id when it settles it. */
export const DEDUPE_HEADER = 'fennel_dedupe';

/** The task id a message published with `deduplicate: { ttlMs }` takes for that long. */
export function dedupeTtl(message: WireMessage, route: Route): { id: string; ttlMs: number } | undefined {
  const id = message.headers['id'];
  return typeof route.deduplicate === 'object' && typeof id === 'string' ? { id, ttlMs: route.deduplicate.ttlMs } : undefined;
}

/** The task id a deduplicated message holds, or undefined for an ordinary message. */
export function dedupeId(message: WireMessage): string | undefined {
  const id = message.headers['id'];
  return message.headers[DEDUPE_HEADER] === true && typeof id === 'string' ? id : undefined;
}

export interface Delivery {
  readonly message: WireMessage;
  readonly queue: string;
  /** True when this message was handed out before and not acknowledged (a consumer died or released it). */
  readonly redelivered: boolean;
  /** Removes the message for good. Call only after its outcome is stored. */
  ack(): Promise<void>;
  /**
   * `requeue: true` makes the message visible again at once (shutdown, a slot that must give it back);
   * `requeue: false` moves it to the dead letters with `reason`, where `requeueDeadLetter` can send it again.
   */
  reject(opts: { requeue: boolean; reason?: string }): Promise<void>;
  /**
   * Engines whose acks are writes to the store that also holds results (sqlite://, one file for both): the ack as a
   * write a result backend on that file can take inside the transaction that stores the outcome
   * (ResultBackend.settleAndAck). Undefined elsewhere.
   */
  readonly joinableAck?: JoinableWrite | undefined;
}

export interface ConsumeOptions {
  queues: readonly string[];
  /** At most this many deliveries are held (handed out and not yet acked or rejected) at once. */
  prefetch: number;
  /**
   * Broadcast queues this consumer receives a copy of every message of, while it consumes (`Route.broadcast`),
   * and its name (the worker's node name). A copy is a delivery like any other, inside the same prefetch window;
   * its `queue` is the consumer's own copy queue on engines that keep one (protocol/queues.ts).
   */
  broadcast?: { queues: readonly string[]; consumer: string } | undefined;
  /**
   * For engines that claim (pull): after a claim filled the window, claim again once the held count is down to this.
   * The default, `prefetch - 1`, takes one more after every settle, as basic.qos does. A lower mark makes fewer,
   * larger claims; the worker asks for half its window while its pool pipelines. Engines that push (AMQP) ignore it.
   */
  refillAt?: number | undefined;
}

export interface Subscription {
  /**
   * Stops handing out new deliveries. Held deliveries stay valid, and their leases are kept, until settled. Once it
   * resolves, nothing more is taken from the queues for this subscription (a claim in flight has been handed back).
   */
  cancel(): Promise<void>;
  /**
   * Resolves once the subscription has reached the broker (its first claim, or its consume, succeeded), or once it
   * is cancelled, whichever comes first; never rejects. A consumer started while its broker is away keeps trying
   * in the background: this says when it is really consuming (a worker says "ready" then).
   */
  readonly live?: Promise<void>;
}

export interface DeadLetter {
  id: string;
  queue: string;
  reason: string;
  taskId: string | null;
  taskName: string | null;
  createdAt: Date;
  message: WireMessage;
}

export interface QueueStats {
  queue: string;
  /** Visible now. */
  ready: number;
  /** Waiting for their countdown or eta. */
  scheduled: number;
  /** Handed out to a consumer and not yet acknowledged. */
  unacked: number;
}

/** Who consumes one queue now, as far as the engine can tell (`Transport.consumers`). */
export interface QueueConsumers {
  /** Live consumers of the queue. */
  count: number;
  /**
   * Their names (Fennel workers' node names), where the engine knows them: they announced themselves with
   * `announceConsumer`. Empty when the broker reports only a count (AMQP: `count` may be above 0 here).
   */
  names: string[];
}

export interface Transport {
  readonly url: string;
  readonly capabilities: TransportCapabilities;
  /** Resolves only once the broker has the message durably. */
  publish(message: WireMessage, route: Route): Promise<void>;
  /** Publishes a batch in one round trip (one transaction) where the engine can. */
  publishMany(batch: ReadonlyArray<readonly [WireMessage, Route]>): Promise<void>;
  /**
   * Hands out deliveries to `onDelivery`, never more than `prefetch` held at once. While a delivery is held
   * its lease is renewed by this process, so a long task is never handed to a second consumer; if this
   * process dies, the message becomes visible again after the visibility timeout.
   */
  consume(options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<Subscription>;
  purge(queue: string): Promise<number>;
  /** Messages waiting in the queue (ready plus scheduled), not counting those handed out. */
  depth(queue: string): Promise<number>;
  stats(): Promise<QueueStats[]>;
  listDeadLetters(options?: { limit?: number }): Promise<DeadLetter[]>;
  /** Publishes a dead letter's message again to its queue and removes the record. False if no such id. */
  requeueDeadLetter(id: string): Promise<boolean>;
  /**
   * Optional (presence). Records that `consumer` consumes `queues` for the next `ttlSec` seconds; announcing
   * again renews it. A worker calls it at start and on every heartbeat. Engines whose broker knows its
   * consumers itself (AMQP) do not implement it.
   */
  announceConsumer?(consumer: string, queues: readonly string[], ttlSec: number): Promise<void>;
  /** Optional (presence). Removes what `announceConsumer` recorded, at once (a warm shutdown). */
  withdrawConsumer?(consumer: string, queues: readonly string[]): Promise<void>;
  /**
   * Optional (presence). The live consumers of every queue the engine can see one on, by queue, plus an entry
   * for `queue` when given (`count` 0 if none). Announced consumers count until their TTL passes; AMQP asks
   * RabbitMQ (`consumer_count` of a passive declare) and can see only `queue` and the queues this transport has
   * used. Read by `get()`'s timeout hint and `fennel call` (see docs/transports.md).
   */
  consumers?(queue?: string): Promise<Map<string, QueueConsumers>>;
  close(): Promise<void>;
}

/** Reads the task id and name of a message for dead-letter records, without trusting the message. */
export function describeMessage(message: WireMessage): { taskId: string | null; taskName: string | null } {
  const id = message.headers['id'];
  const task = message.headers['task'];
  return { taskId: typeof id === 'string' ? id : null, taskName: typeof task === 'string' ? task : null };
}
