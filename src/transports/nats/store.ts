// The JetStream primitives under the shared consumer (transports/subscription.ts), for one subscription:
//   prepare    the queues' consumers made (and the streams) and their wake subjects subscribed, once, by consume()
//              or else by the first claim that can (a cluster away or slow when the worker started)
//   claim      a `no_wait` pull from each queue's durable consumer in the order given, for the room left: the
//              server hands each message to one pull request only, and tracks it as pending until it is acked
//   renew      "+WPI" for every held message: its ack wait (the visibility timeout) starts again
//   ack        "+ACK": WorkQueue retention deletes the message once the server has applied it. Sent without waiting
//              for the server's confirmation (as AMQP's basic.ack is), except for a deduplicated message: its id is
//              free again only once the message is deleted, and a publish of it after ack() resolved must be
//              taken. A plain ack lost with its connection costs a redelivery after the ack wait, never a message.
//   requeue    "-NAK": handed out again at once, its delivery count (redelivered) one higher
//   deadLetter the message and its reason published to P_DEAD (one record per stream sequence: a retry is a
//              duplicate the server drops), then "+TERM" (deletes it: never delivered again)
//   releaseAll "-NAK" for each held message (transport close)
//   waitForWork the queues' wake subjects (core NATS), which producers, requeues and the scheduler publish to
// A message whose holder dies is handed out again when its ack wait lapses, marked redelivered (deliveries > 1).

import type { Replies } from '../../clients/nats/requests.ts';
import { acknowledge, ackMeta, ConsumerGoneError, inProgress, pullNoWait, settle, type Msg } from '../../clients/nats/jetstream.ts';
import { decodeEnvelope } from '../../protocol/envelope.ts';
import type { WireMessage } from '../../protocol/message.ts';
import type { Claimed, ClaimResult, QueueStore } from '../subscription.ts';

/** A held message: where to settle it, and what a dead letter keeps. */
export interface HeldMessage {
  readonly queue: string;
  /** Its `$JS.ACK.…` reply subject. */
  readonly reply: string;
  readonly streamSeq: number;
  /** Published with `deduplicate` (subject p.q.<queue>.d.<task id>, not the queue's plain one): its ack waits for the server. */
  readonly deduplicated: boolean;
  /** The payload as delivered. */
  readonly raw: string;
  readonly message: WireMessage;
}

/** What the store needs of its transport. */
export interface StoreHost {
  readonly timeoutMs: number;
  readonly stream: string;
  /** The connection's requests (clients/nats/requests.ts). */
  connection(): Promise<Replies>;
  consumerName(queue: string): string;
  /** The subject of the queue's ready messages published without `deduplicate` (p.q.<queue>.m). */
  plainSubject(queue: string): string;
  /** Makes each queue's consumer if missing (and the streams first); resolves with their ack waits in ms. */
  ensureConsumers(queues: readonly string[]): Promise<number[]>;
  /** Makes the queue's consumer again (it was deleted under a running subscription). */
  recreateConsumer(queue: string): Promise<void>;
  /** Whether the queue's consumer exists (an error if the server cannot say). */
  consumerExists(queue: string): Promise<boolean>;
  deadLetter(held: HeldMessage, reason: string): Promise<void>;
  /** Tells idle consumers of `queue` (any process) that there may be work. */
  wake(queue: string): void;
  /** Subscribes to the wake subject of `queues`; returns the unsubscribe. */
  onWake(queues: readonly string[], wake: () => void): Promise<() => void>;
}

/** Messages asked for by one pull: the server's default limit of a batch is far above it. */
const MAX_PULL = 256;

export class NatsQueueStore implements QueueStore<HeldMessage> {
  /** Set by a wake that arrived since the last claim began: the next wait returns at once. */
  private woken = false;
  private wakeWaiter: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;

  /** Set once the queues' consumers exist and the wake subscriptions are held (prepare). */
  private prepared: Promise<number[]> | undefined;
  /** Each queue's plain subject: a message on any other subject of the queue was deduplicated. */
  private readonly plainSubjects: ReadonlyMap<string, string>;

  constructor(
    private readonly host: StoreHost,
    private readonly queues: readonly string[],
  ) {
    this.plainSubjects = new Map(queues.map((queue) => [queue, host.plainSubject(queue)]));
  }

  /**
   * Makes the queues' consumers (and the streams) and subscribes to their wake subjects, once: before the first
   * claim, so that no wake-up falls in between. Resolves with the consumers' ack waits. A failure is tried again by
   * the next call (the next claim, after the subscription's backoff).
   */
  prepare(): Promise<number[]> {
    this.prepared ??= (async () => {
      const ackWaits = await this.host.ensureConsumers(this.queues);
      if (!this.stopped && !this.unsubscribe) this.unsubscribe = await this.host.onWake(this.queues, () => this.wake());
      if (this.stopped) this.unsubscribe?.();
      return ackWaits;
    })();
    this.prepared.catch(() => (this.prepared = undefined));
    return this.prepared;
  }

  private wake(): void {
    this.woken = true;
    const waiter = this.wakeWaiter;
    this.wakeWaiter = undefined;
    waiter?.();
  }

  async claim(max: number): Promise<ClaimResult<HeldMessage>> {
    await this.prepare();
    this.woken = false;
    const nc = await this.host.connection();
    const claimed: Array<Claimed<HeldMessage>> = [];
    try {
      for (const queue of this.queues) {
        while (claimed.length < max) {
          const room = Math.min(max - claimed.length, MAX_PULL);
          const msgs = await this.pull(nc, queue, room);
          for (const msg of msgs) claimed.push(this.held(queue, msg));
          if (msgs.length < room) break;
        }
        if (claimed.length >= max) break;
      }
    } catch (error) {
      // What earlier pulls took is this subscription's now: hand it out rather than leave it to lapse.
      if (claimed.length === 0) throw error;
    }
    return { claimed };
  }

  private async pull(nc: Replies, queue: string, batch: number): Promise<Msg[]> {
    try {
      return await pullNoWait(nc.nc, this.host.stream, this.host.consumerName(queue), batch, this.host.timeoutMs);
    } catch (error) {
      // Deleted under us (its inactive threshold passed while no one pulled, an operator, a stream made again): made
      // again, and asked once more. nats-server 2.9 does not answer a pull from a consumer that is not there (no
      // status, no "no responders"): a pull that got no answer asks whether the consumer still exists.
      if (!(error instanceof ConsumerGoneError) && (await this.host.consumerExists(queue))) throw error;
      await this.host.recreateConsumer(queue);
      return pullNoWait(nc.nc, this.host.stream, this.host.consumerName(queue), batch, this.host.timeoutMs);
    }
  }

  /** Never throws: a payload that is not an envelope is handed out marked malformed, and the executor dead-letters it. */
  private held(queue: string, msg: Msg): Claimed<HeldMessage> {
    const raw = msg.string();
    const message = decodeEnvelope(raw);
    const { deliveries, streamSeq } = ackMeta(msg.reply ?? '');
    const deduplicated = msg.subject !== this.plainSubjects.get(queue);
    return { handle: { queue, reply: msg.reply!, streamSeq, deduplicated, raw, message }, message, queue, redelivered: deliveries > 1 };
  }

  async renew(held: readonly HeldMessage[]): Promise<void> {
    const replies = await this.host.connection();
    for (const h of held) inProgress(replies.nc, h.reply);
  }

  async ack(held: HeldMessage): Promise<void> {
    const replies = await this.host.connection();
    if (held.deduplicated) await settle(replies, held.reply, '+ACK', this.host.timeoutMs);
    else acknowledge(replies.nc, held.reply);
  }

  async requeue(held: HeldMessage): Promise<void> {
    await settle(await this.host.connection(), held.reply, '-NAK', this.host.timeoutMs);
    this.host.wake(held.queue);
  }

  deadLetter(held: HeldMessage, reason: string): Promise<void> {
    return this.host.deadLetter(held, reason);
  }

  async releaseAll(held: readonly HeldMessage[]): Promise<void> {
    await Promise.all(held.map((h) => this.requeue(h).catch(() => {})));
  }

  /** Resolves on a wake-up of one of the queues, at `until`, or when the store stops; no request to the server. */
  waitForWork(until: number): Promise<void> {
    if (this.woken || this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.wake(), Math.max(1, until - Date.now()));
      timer.unref();
      this.wakeWaiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.wake();
  }
}
