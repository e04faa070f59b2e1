// The consumer, written once for every engine that is asked for work (sqlite://, redis://, memory://), as kombu's
// virtual/base.py sits above its channels' primitives. An engine supplies a `QueueStore`: claim up to n messages
// from its queues, renew the leases it holds, ack, requeue, dead-letter, hand everything back, and say when there
// may be work (a notification it pushes, or a blocking wait). This module owns what is the same on all of them:
//   - the prefetch window: never more than `prefetch` deliveries held (handed out, not yet settled);
//   - when to claim: at once while there is room; after a claim that filled the window, once settles bring the
//     held count down to `refillAt` or a notification finds room; when idle, on the engine's notification, at the earliest scheduled message
//     (`nextVisibleAt`), and every `pollMs` at the latest;
//   - lease renewal: every `renewEveryMs` while anything is held, from this process (the worker's parent, so a
//     CPU-bound task in a pool slot cannot starve it);
//   - settling once: a delivery is acked or rejected once; if the engine's step fails the delivery stays held
//     and leased, so the caller's error path can settle it again;
//   - stop and release: `cancel` stops claiming while held deliveries keep their leases until settled; a claim
//     that returns after `cancel` goes straight back, before `cancel` resolves; `releaseAll` (transport close)
//     hands back what is held.
// AMQP pushes deliveries itself (basic.qos is its window) and keeps its native consumer (transports/amqp.ts).

import type { WireMessage } from '../protocol/message.ts';
import type { JoinableWrite, SqliteFile } from '../clients/sqlite-file.ts';
import type { ConsumeOptions, Delivery, Subscription } from './transport.ts';

/** One message an engine claimed for this subscription. `handle` is the engine's own: what its steps need. */
export interface Claimed<H> {
  handle: H;
  message: WireMessage;
  queue: string;
  redelivered: boolean;
}

export interface ClaimResult<H> {
  claimed: Array<Claimed<H>>;
  /** When the next message in these queues that is not visible yet becomes visible (an eta, a lapsing lease), if known. */
  nextVisibleAt?: number | undefined;
}

/** What an engine supplies for one subscription (one lease holder). Every step is atomic in the engine. */
export interface QueueStore<H> {
  /** Takes and leases up to `max` visible messages from the subscription's queues, in the order they were given. */
  claim(max: number): Promise<ClaimResult<H>>;
  /** Pushes the lease of every held message forward. */
  renew(held: readonly H[]): Promise<void>;
  /** Removes a held message for good. */
  ack(handle: H): Promise<void>;
  /**
   * Engines whose acks can join another write's transaction (Delivery.joinableAck): the file that write must be on,
   * and the ack as a synchronous write inside it.
   */
  joinableAck?(handle: H): { file: SqliteFile; run(): void };
  /** Makes a held message visible again at once (redelivered). */
  requeue(handle: H): Promise<void>;
  /** Moves a held message to the dead letters with `reason`. */
  deadLetter(handle: H, reason: string): Promise<void>;
  /** Hands every held message back at once (transport close); best effort: leases lapse on their own otherwise. */
  releaseAll(held: readonly H[]): Promise<void>;
  /** Engines that notify: calls `poke` whenever there may be new work. Returns the unsubscribe. */
  watch?(poke: () => void): () => void;
  /** Engines that block: resolves when there may be work, or by `until` (ms since the epoch). Ended by `stop`. */
  waitForWork?(until: number): Promise<void>;
  /** No more claims or waits (cancel); settles still work. */
  stop?(): void;
}

export interface PullOptions extends ConsumeOptions {
  /** Renew held leases this often (a third of the visibility timeout); undefined: the engine has no leases. */
  renewEveryMs?: number | undefined;
  /** The longest an idle consumer waits before it looks again without a notification. */
  pollMs: number;
}

interface Held<H> {
  readonly handle: H;
  settled: boolean;
}

/** The longest the consumer backs off between failed claims (an unreachable broker, a locked file). */
const MAX_BACKOFF_MS = 2_000;

/** One consume loop over a QueueStore. */
export class PullSubscription<H> implements Subscription {
  private readonly held = new Set<Held<H>>();
  private readonly refillAt: number;
  private active = true;
  private finished = false;
  /** What the loop waits for now, and how to wake it. */
  private waitingFor: 'room' | 'work' | undefined;
  private wakeLoop: (() => void) | undefined;
  /** Set by a notification; a claim in flight when it arrives is followed by another at once. */
  private poked = false;
  private readonly unwatch: (() => void) | undefined;
  private readonly renewTimer: NodeJS.Timeout | undefined;
  private readonly loopDone: Promise<void>;
  /** Resolves after the first claim that succeeded, or at cancel (Subscription.live). */
  readonly live: Promise<void>;
  private markLive!: () => void;

  constructor(
    private readonly store: QueueStore<H>,
    private readonly options: PullOptions,
    private readonly onDelivery: (delivery: Delivery) => void,
    private readonly onFinished: () => void = () => {},
  ) {
    this.live = new Promise<void>((resolve) => (this.markLive = resolve));
    this.refillAt = Math.max(0, Math.min(options.refillAt ?? options.prefetch - 1, options.prefetch - 1));
    this.unwatch = store.watch?.(() => this.poke());
    if (options.renewEveryMs !== undefined) {
      this.renewTimer = setInterval(() => this.renew(), Math.max(50, options.renewEveryMs));
      this.renewTimer.unref();
    }
    this.loopDone = this.loop();
  }

  private poke(): void {
    this.poked = true;
    // A notification wakes an idle loop, and a loop waiting for the refill mark if there is any room at all.
    if (this.waitingFor === 'work' || (this.waitingFor === 'room' && this.held.size < this.options.prefetch)) this.wake();
  }

  private wake(): void {
    const wake = this.wakeLoop;
    this.wakeLoop = undefined;
    this.waitingFor = undefined;
    wake?.();
  }

  /** Sleeps until woken for `reason`, or until `until` (ms since the epoch) when given. */
  private sleep(reason: 'room' | 'work', until = Infinity): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      this.waitingFor = reason;
      this.wakeLoop = () => {
        clearTimeout(timer);
        resolve();
      };
      if (until !== Infinity) {
        timer = setTimeout(() => this.wake(), Math.max(1, until - Date.now()));
        timer.unref();
      }
    });
  }

  private renew(): void {
    if (this.held.size === 0) return;
    // A failed renewal is tried again on the next tick; the lease has two more ticks of slack before it lapses.
    this.store.renew([...this.held].map((h) => h.handle)).catch(() => {});
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.active) {
      const room = this.options.prefetch - this.held.size;
      if (room <= 0) {
        await this.sleep('room');
        continue;
      }
      this.poked = false;
      let result: ClaimResult<H>;
      try {
        result = await this.store.claim(room);
        failures = 0;
        this.markLive();
      } catch {
        // The broker is away or the file is locked: back off and look again rather than fail the worker.
        failures++;
        if (this.active) await this.sleep('work', Date.now() + Math.min(100 * failures, MAX_BACKOFF_MS));
        continue;
      }
      if (!this.active) {
        // Cancelled while the claim was in flight: these were never handed out, so they go straight back.
        await Promise.all(result.claimed.map((c) => this.store.requeue(c.handle).catch(() => {})));
        break;
      }
      for (const claimed of result.claimed) this.deliver(claimed);
      if (result.claimed.length === room) {
        // The window is full (or there may be more): wait for settles to bring it down to the refill mark.
        if (this.held.size > this.refillAt) await this.sleep('room');
        continue;
      }
      if (this.poked) continue; // something changed while the claim was in flight
      const until = Math.min(result.nextVisibleAt ?? Infinity, Date.now() + this.options.pollMs);
      try {
        if (this.store.waitForWork) await this.store.waitForWork(until);
        else await this.sleep('work', until);
      } catch {
        failures++;
        if (this.active) await this.sleep('work', Date.now() + Math.min(100 * failures, MAX_BACKOFF_MS));
      }
    }
    if (this.held.size === 0) this.finish();
  }

  private deliver(claimed: Claimed<H>): void {
    const held: Held<H> = { handle: claimed.handle, settled: false };
    this.held.add(held);
    this.onDelivery({
      message: claimed.message,
      queue: claimed.queue,
      redelivered: claimed.redelivered,
      ack: () => this.settle(held, () => this.store.ack(held.handle)),
      reject: ({ requeue, reason }) => this.settle(held, () => (requeue ? this.store.requeue(held.handle) : this.store.deadLetter(held.handle, reason ?? 'rejected'))),
      joinableAck: this.joinable(held),
    });
  }

  private joinable(held: Held<H>): JoinableWrite | undefined {
    const step = this.store.joinableAck?.(held.handle);
    if (!step) return undefined;
    return {
      file: step.file,
      // Settled meanwhile (a requeue at shutdown): the ack is not taken, as ack() would not take it.
      run: () => {
        if (!held.settled) step.run();
      },
      committed: () => this.settled(held),
    };
  }

  private async settle(held: Held<H>, step: () => Promise<void>): Promise<void> {
    if (held.settled) return;
    // If the step fails, the delivery stays held and leased, and the caller's error path can settle it again;
    // marking it settled first would leave it leased for ever.
    await step();
    this.settled(held);
  }

  /** After a settle's step has committed: the delivery leaves the window. */
  private settled(held: Held<H>): void {
    if (held.settled) return;
    held.settled = true;
    this.held.delete(held);
    if (this.waitingFor === 'room' && this.held.size <= this.refillAt) this.wake();
    if (!this.active && this.held.size === 0) this.finish();
  }

  /**
   * Stops claiming; held deliveries keep their leases until they are settled. Resolves once the loop has ended: a
   * claim in flight has come back and what it took has been handed back. Resolving sooner let a claim sent before
   * the cancel take a message published after it (NATS queues a pull request and can serve it after a later
   * publish), so the message sat held and uncounted while its subscription was gone.
   */
  async cancel(): Promise<void> {
    if (this.active) {
      this.active = false;
      this.markLive();
      this.unwatch?.();
      this.store.stop?.();
      this.wake();
    }
    await this.loopDone;
  }

  /** Hands every held message back for immediate redelivery (transport close), once the loop has ended (cancel). */
  async releaseAll(): Promise<void> {
    await this.cancel();
    const handles = [...this.held].map((h) => h.handle);
    for (const h of this.held) h.settled = true;
    this.held.clear();
    if (handles.length > 0) await this.store.releaseAll(handles).catch(() => {});
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.renewTimer);
    this.onFinished();
  }
}

/** The subscriptions of one transport, so that closing it hands back what they hold. */
export class PullSubscriptions {
  private readonly live = new Set<PullSubscription<unknown>>();

  start<H>(store: QueueStore<H>, options: PullOptions, onDelivery: (delivery: Delivery) => void): Subscription {
    if (options.queues.length === 0) throw new RangeError('consume needs at least one queue');
    const sub: PullSubscription<H> = new PullSubscription(store, options, onDelivery, () => this.live.delete(sub));
    this.live.add(sub);
    return sub;
  }

  /** Cancels every subscription and hands back what each holds. */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.live].map((sub) => sub.releaseAll()));
    this.live.clear();
  }
}
