// Channels: publish/subscribe by name, through the broker's own engine (channels/engine.ts). Every subscription
// receives every message published while it is live, in publish order per publisher, at most once, as with
// ZeroMQ's PUB/SUB: nothing is stored for a subscriber that is not there, and one that falls too far behind is
// told (ChannelOverflowError) or loses the oldest messages it has not read, as it chose. docs/patterns.md#channels.
//
// This module owns what is the same on every engine: the JSON codec and its checks at publish (those of task
// arguments: protocol/json.ts, maxPayloadBytes), the bounded buffer of each subscription and its overflow policy,
// and the life of the async iterator (ready, break, abort, app.close()).

import { ChannelOverflowError, ClosedError, ConfigError, PayloadTooLargeError } from '../errors.ts';
import { decodeJson, encodeJson } from '../protocol/json.ts';
import type { ChannelEngine } from './engine.ts';

/** Messages a subscription holds unread before its overflow policy applies. */
export const DEFAULT_BUFFER_SIZE = 10_000;

/** What a full buffer does with the next message: end the subscription with ChannelOverflowError, or drop the oldest. */
export type OverflowPolicy = 'error' | 'drop-oldest';

/** A channel's defaults for its subscriptions. */
export interface ChannelOptions {
  /** Messages received and not yet read that a subscription holds (default 10,000). */
  bufferSize?: number;
  /** When a message arrives to a full buffer: 'error' (default) ends the subscription with ChannelOverflowError; 'drop-oldest' drops the oldest unread message and counts it in `dropped`. */
  overflow?: OverflowPolicy;
}

export interface SubscribeOptions extends ChannelOptions {
  /** Aborting it ends the subscription: the iterator ends (done, no error) and the engine unsubscribes. */
  signal?: AbortSignal;
}

/** 1 to 200 characters safe as a Redis channel suffix, an AMQP exchange name and a SQLite value alike. */
const CHANNEL_NAME = /^[A-Za-z0-9_.:-]{1,200}$/;
const OVERFLOW_POLICIES: readonly OverflowPolicy[] = ['error', 'drop-oldest'];

/** What the channels of one app share: its engine (opened on first use), its payload limit, its live subscriptions. */
export class ChannelHub {
  private engineInstance: ChannelEngine | undefined;
  private readonly live = new Set<{ return(): Promise<unknown> }>();
  private closed = false;

  constructor(
    private readonly openEngine: () => ChannelEngine,
    readonly maxPayloadBytes: number,
  ) {}

  /** The engine, opened on first use. Throws ClosedError after close(). */
  get engine(): ChannelEngine {
    if (this.closed) throw new ClosedError('this Fennel app');
    return (this.engineInstance ??= this.openEngine());
  }

  /** A handle on channel `name`; opens nothing. Throws ConfigError for a bad name or option. */
  channel<T>(name: string, options: ChannelOptions = {}): Channel<T> {
    if (typeof name !== 'string' || !CHANNEL_NAME.test(name)) {
      throw new ConfigError(`channel name ${JSON.stringify(name)}: use 1 to 200 letters, digits, '.', '_', ':' or '-' (the same name on every engine)`);
    }
    return new Channel<T>(name, this, resolveOptions(`channel '${name}'`, options, false));
  }

  /** @internal Subscriptions register while live, so close() can end them. */
  track(subscription: { return(): Promise<unknown> }, live: boolean): void {
    if (live) this.live.add(subscription);
    else this.live.delete(subscription);
  }

  /** Ends every live subscription (their iterators end, done), then closes the engine. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.live].map((subscription) => subscription.return()));
    await this.engineInstance?.close();
  }
}

/** A named channel of an app (`app.channel<T>(name)`): publish values of type T, subscribe to them. */
export class Channel<T = unknown> {
  /** @internal Made by `app.channel()`. */
  constructor(
    readonly name: string,
    private readonly hub: ChannelHub,
    private readonly defaults: Required<ChannelOptions>,
  ) {}

  /**
   * Sends `value` to every subscription of this channel live now, in any process on the broker; to no one if there
   * is none. Rejects, before anything is sent, with SerializationError for a value JSON cannot carry (the message
   * names its path) and PayloadTooLargeError for one over the app's maxPayloadBytes; with BrokerUnavailableError if
   * the broker cannot take it. Resolves once the broker has it: a subscription whose `ready` had resolved before
   * this call then receives it (unless it falls behind). Calls made one after another, awaited or not, arrive in
   * that order.
   */
  async publish(value: T): Promise<void> {
    const payload = encodeJson(value, 'message');
    const limit = this.hub.maxPayloadBytes;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit: text that short cannot be over the limit, and is not measured.
    if (payload.length * 3 > limit) {
      const bytes = Buffer.byteLength(payload, 'utf8');
      if (bytes > limit) throw new PayloadTooLargeError(bytes, limit);
    }
    await this.hub.engine.publish(this.name, payload);
  }

  /**
   * Subscribes at once and returns the subscription, an async iterator of the values published from now on:
   * `for await (const v of channel.subscribe({ signal })) …`. `await subscription.ready` before publishing
   * what it must see. Options override the channel's `bufferSize` and `overflow`. Throws ClosedError once the
   * app is closed, ConfigError for a bad option.
   */
  subscribe(options: SubscribeOptions = {}): Subscription<T> {
    const resolved = resolveOptions(`subscribe to channel '${this.name}'`, options, true, this.defaults);
    return new Subscription<T>(this.name, this.hub, resolved, options.signal);
  }
}

/**
 * One subscription to a channel, live from `ready` until it ends: its iterator ends (done) on `return()` (a
 * for-await `break`), on its `signal`'s abort and on `app.close()`, and throws ChannelOverflowError once if it
 * falls `bufferSize` messages behind with `overflow: 'error'`. However it ends, the engine unsubscribes.
 */
export class Subscription<T = unknown> implements AsyncIterableIterator<T> {
  /**
   * Resolves once the subscription is established on the broker: from then on it receives every message
   * published, by any process. Rejects with why it never will be: the broker's error (BrokerUnavailableError),
   * the signal's reason if aborted first, ClosedError if ended first. Never an unhandled rejection.
   */
  readonly ready: Promise<void>;
  readonly bufferSize: number;
  readonly overflow: OverflowPolicy;
  private readonly buffer = new Fifo<string>();
  private readonly waiting: Array<{ resolve: (result: IteratorResult<T, undefined>) => void; reject: (error: unknown) => void }> = [];
  private droppedCount = 0;
  private malformedCount = 0;
  private ended = false;
  /** The error the next `next()` throws, once. */
  private failure: { error: unknown } | undefined;
  /** Resolves `ready` (no argument) or rejects it; once settled, later calls do nothing. */
  private settleReady: (failed?: { error: unknown }) => void = () => {};
  /** The engine's unsubscribe, once subscribed (undefined if subscribing failed). */
  private readonly unsubscribe: Promise<(() => Promise<void>) | undefined>;
  private stopping: Promise<void> | undefined;
  private readonly onAbort = (): void => void this.end(this.signal?.reason);

  /** @internal Made by `Channel.subscribe()`. */
  constructor(
    readonly channel: string,
    private readonly hub: ChannelHub,
    options: Required<ChannelOptions>,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.bufferSize = options.bufferSize;
    this.overflow = options.overflow;
    let engine: ChannelEngine | undefined;
    let openError: unknown;
    try {
      engine = hub.engine;
    } catch (error) {
      if (error instanceof ClosedError) throw error; // the app is closed: a mistake at the call
      openError = error; // the engine cannot open (a SQLite file that cannot be created): as a broker error, below
    }
    this.ready = new Promise<void>((resolve, reject) => {
      this.settleReady = (failed) => (failed ? reject(failed.error) : resolve());
    });
    this.ready.catch(() => {}); // awaiting it still sees the rejection
    if (signal?.aborted) {
      this.ended = true;
      this.settleReady({ error: signal.reason });
      this.unsubscribe = Promise.resolve(undefined);
      return;
    }
    signal?.addEventListener('abort', this.onAbort, { once: true });
    hub.track(this, true);
    const subscribed = engine ? engine.subscribe(channel, (payload) => this.receive(payload)) : Promise.reject(openError);
    this.unsubscribe = subscribed.then(
      (unsubscribe) => {
        this.settleReady(); // no effect if it ended meanwhile: stop() then calls unsubscribe
        return unsubscribe;
      },
      (error: unknown) => {
        this.fail(error);
        return undefined;
      },
    );
  }

  /** Messages dropped unread because the buffer was full (`overflow: 'drop-oldest'`). */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Messages received and not yet read. */
  get buffered(): number {
    return this.buffer.length;
  }

  /** Messages skipped because they were not Fennel's JSON (written to the channel by something else). */
  get malformed(): number {
    return this.malformedCount;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T, undefined>> {
    while (this.buffer.length > 0) {
      const decoded = this.decode(this.buffer.shift()!);
      if (decoded) return Promise.resolve({ value: decoded.value, done: false });
    }
    if (this.failure) {
      const { error } = this.failure;
      this.failure = undefined;
      return Promise.reject(error);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Ends the subscription (what a for-await `break` calls): unread messages are discarded, the engine unsubscribes. */
  async return(): Promise<IteratorResult<T, undefined>> {
    await this.end();
    return { value: undefined, done: true };
  }

  /** One message from the engine, in order. */
  private receive(payload: string): void {
    if (this.ended) return;
    // Someone is waiting, so the buffer is empty: hand it over.
    const waiter = this.waiting[0];
    if (waiter) {
      const decoded = this.decode(payload);
      if (decoded) {
        this.waiting.shift();
        waiter.resolve({ value: decoded.value, done: false });
      }
      return;
    }
    if (this.buffer.length >= this.bufferSize) {
      if (this.overflow === 'error') {
        this.fail(new ChannelOverflowError(this.channel, this.bufferSize));
        return;
      }
      this.buffer.shift();
      this.droppedCount++;
    }
    this.buffer.push(payload);
  }

  private decode(payload: string): { value: T } | undefined {
    try {
      return { value: decodeJson(payload) as T };
    } catch {
      this.malformedCount++; // anyone can write to a Redis channel or an AMQP exchange
      return undefined;
    }
  }

  /** Ends it with `error`: the next `next()` (or the one waiting) throws it, once; later ones are done. */
  private fail(error: unknown): void {
    if (this.ended) return;
    this.finish(error);
    const waiter = this.waiting.shift();
    if (waiter) waiter.reject(error);
    else this.failure = { error };
    for (const other of this.waiting.splice(0)) other.resolve({ value: undefined, done: true });
  }

  /** Ends it without an error: iterators see done. */
  private end(reason?: unknown): Promise<void> {
    if (!this.ended) {
      this.finish(reason ?? new ClosedError(`the subscription to channel '${this.channel}'`));
      for (const waiter of this.waiting.splice(0)) waiter.resolve({ value: undefined, done: true });
    }
    return this.stopping ?? Promise.resolve();
  }

  /** Marks it ended, drops what it holds, and unsubscribes on the engine (once). */
  private finish(readyError: unknown): void {
    this.ended = true;
    this.buffer.clear();
    this.settleReady({ error: readyError }); // no effect once it has resolved
    this.signal?.removeEventListener('abort', this.onAbort);
    this.stopping = (async () => {
      const unsubscribe = await this.unsubscribe;
      try {
        await unsubscribe?.();
      } catch {
        // the broker is away: it drops the subscription with the connection
      }
      this.hub.track(this, false);
    })();
  }
}

/** A queue with O(1) shift (Array.prototype.shift is O(n): 10,000 buffered messages would make each read slow). */
class Fifo<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) this.clear();
    else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

/** Checks subscription or channel options where they are given, and fills in the defaults. */
function resolveOptions(where: string, options: SubscribeOptions, allowSignal: boolean, defaults?: Required<ChannelOptions>): Required<ChannelOptions> {
  if (options === null || typeof options !== 'object') throw new ConfigError(`${where}: options must be an object`);
  const known = allowSignal ? ['bufferSize', 'overflow', 'signal'] : ['bufferSize', 'overflow'];
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new ConfigError(`${where}: unknown option '${key}'; the options are ${known.join(', ')}`);
  }
  const { bufferSize, overflow, signal } = options as { bufferSize?: unknown; overflow?: unknown; signal?: unknown };
  if (bufferSize !== undefined && !(Number.isSafeInteger(bufferSize) && (bufferSize as number) > 0)) {
    throw new ConfigError(`${where}: bufferSize ${JSON.stringify(bufferSize)} must be a whole number of messages ≥ 1 (default ${DEFAULT_BUFFER_SIZE})`);
  }
  if (overflow !== undefined && !OVERFLOW_POLICIES.includes(overflow as OverflowPolicy)) {
    throw new ConfigError(`${where}: overflow ${JSON.stringify(overflow)} must be 'error' (the default) or 'drop-oldest'`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new ConfigError(`${where}: signal must be an AbortSignal`);
  return {
    bufferSize: (bufferSize as number | undefined) ?? defaults?.bufferSize ?? DEFAULT_BUFFER_SIZE,
    overflow: (overflow as OverflowPolicy | undefined) ?? defaults?.overflow ?? 'error',
  };
}
