// Core NATS publish/subscribe (no JetStream) for the engines that are at most once by nature: the event bus
// (events/nats.ts), the channel engine (channels/nats.ts) and the remote-control mailbox (control/nats.ts). Core NATS
// delivers a message to the subscriptions the server holds when it arrives and keeps nothing, which is what
// Celery's events and pidbox promise on every engine.
//
// What this module adds to the client:
//   - subjectToken(): any text as one subject token, injectively, so a channel name, an oid or an event type can
//     never add a token, leave one empty or be a wildcard (see the function for the encoding);
//   - publish() that resolves once the server has the message: the client writes in call order on one connection,
//     and a PING sent after the writes of one turn of the event loop answers for all of them (one round trip per
//     batch, not per message), bounded by connectTimeoutMs;
//   - subscribe() that resolves once the server holds the subscription (the same PING), bounded the same way;
//   - every failure as a BrokerUnavailableError naming the URL (or PayloadTooLargeError over the server's
//     max_payload), never a hang. A message written while the connection is away is sent once it is back (the
//     client buffers it) or never: nothing is sent twice.
// After a reconnect the client subscribes again by itself; what was published meanwhile is lost, as on Redis.

import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { asBrokerUnavailable, BrokerUnavailableError, ClosedError, PayloadTooLargeError } from '../../errors.ts';
import { NatsLink } from './connection.ts';

/**
 * `text` as one subject token made of [A-Za-z0-9_-] only, injective (two texts never give one token): letters,
 * digits and '-' stay as they are, '_' becomes '__', any other UTF-16 code unit below 0x100 becomes '_' and two
 * lowercase hex digits ('.' → '_2e', ':' → '_3a'), and any other '_u' and four ('é' stays below 0x100: '_e9';
 * '✓' → '_u2713'). After a '_' comes '_', a hex digit or 'u', so a token decodes one way only. The empty text is '_'
 * (no other text gives it: a lone '_' is never a whole escape).
 */
export function subjectToken(text: string): string {
  if (text === '') return '_';
  let token = '';
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (/[A-Za-z0-9-]/.test(char)) token += char;
    else if (char === '_') token += '__';
    else {
      const code = text.charCodeAt(i);
      token += code < 0x100 ? `_${code.toString(16).padStart(2, '0')}` : `_u${code.toString(16).padStart(4, '0')}`;
    }
  }
  return token;
}

/** The bound on any wait for the server, and the error when it passes. */
function bounded<T>(promise: Promise<T>, ms: number, url: string, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new BrokerUnavailableError(url, `the server did not confirm ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** One NATS connection used for core publish/subscribe by one engine. */
export class NatsPubSub {
  private readonly link: NatsLink;
  /** The PING that will confirm the writes of this turn of the event loop, until it is sent. */
  private nextFlush: Promise<void> | undefined;
  /** The URL with any password masked. */
  readonly url: string;
  /** The start of every subject (the URL's `prefix`). */
  readonly prefix: string;

  constructor(
    url: string,
    private readonly options: { connectTimeoutMs: number; name: string },
  ) {
    this.link = new NatsLink(url, options);
    this.url = this.link.url.safeUrl;
    this.prefix = this.link.url.prefix;
  }

  /** `<prefix>.<token>.<token>…`; the tokens must already be subject-safe (subjectToken). */
  subject(...tokens: string[]): string {
    return [this.prefix, ...tokens].join('.');
  }

  /** The connection; BrokerUnavailableError within connectTimeoutMs if the servers do not answer. */
  private async connection(): Promise<NatsConnection> {
    try {
      return await this.link.connection();
    } catch (error) {
      throw asBrokerUnavailable(this.url, error);
    }
  }

  /**
   * Writes `payload` to `subject` and resolves once the server has it; in call order with every other publish and
   * send of this connection. Rejects with BrokerUnavailableError (or PayloadTooLargeError, or ClosedError).
   */
  async publish(subject: string, payload: string): Promise<void> {
    const nc = await this.connection();
    this.write(nc, subject, payload);
    await this.flushSoon(nc);
  }

  /** Fire and forget, in call order with publish(): a message that cannot be sent is dropped. Returns when it is written (or dropped). */
  async send(subject: string, payload: string): Promise<void> {
    try {
      this.write(await this.connection(), subject, payload);
    } catch {
      // dropped: the caller said it does not care
    }
  }

  private write(nc: NatsConnection, subject: string, payload: string): void {
    const data = Buffer.from(payload, 'utf8');
    const limit = nc.info?.max_payload;
    if (limit !== undefined && data.length > limit) throw new PayloadTooLargeError(data.length, limit);
    try {
      nc.publish(subject, data);
    } catch (error) {
      if (nc.isClosed() || nc.isDraining()) throw new ClosedError(`the NATS connection to ${this.url}`);
      throw asBrokerUnavailable(this.url, error);
    }
  }

  /** One PING for every write made before the next turn of the event loop; bounded by connectTimeoutMs. */
  private flushSoon(nc: NatsConnection): Promise<void> {
    if (!this.nextFlush) {
      this.nextFlush = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        this.nextFlush = undefined;
        return bounded(this.ping(nc), this.options.connectTimeoutMs, this.url, 'the message');
      });
    }
    return this.nextFlush;
  }

  /**
   * Calls `onMessage` with the text of every message on `subject` (wildcards allowed) from the moment the promise
   * resolves, until the returned function is called; resolves once the server holds the subscription. `onMessage`
   * must not throw (what it throws is dropped, so one bad handler cannot end the subscription).
   */
  async subscribe(subject: string, onMessage: (payload: string, subject: string) => void): Promise<() => void> {
    const nc = await this.connection();
    let subscription: Subscription;
    try {
      subscription = nc.subscribe(subject, {
        callback: (error, message) => {
          if (error) return; // a permissions error on the subscription: nothing to deliver
          try {
            onMessage(message.string(), message.subject);
          } catch {
            // the engine's handlers are documented not to throw; a bug there must not end the subscription
          }
        },
      });
    } catch (error) {
      if (nc.isClosed() || nc.isDraining()) throw new ClosedError(`the NATS connection to ${this.url}`);
      throw asBrokerUnavailable(this.url, error);
    }
    const stop = (): void => {
      if (!subscription.isClosed()) subscription.unsubscribe();
    };
    try {
      await bounded(this.ping(nc), this.options.connectTimeoutMs, this.url, 'the subscription');
    } catch (error) {
      stop();
      throw error;
    }
    return stop;
  }

  /** A PING, answered once the server has processed everything written before it; its failure a BrokerUnavailableError. */
  private ping(nc: NatsConnection): Promise<void> {
    return nc.flush().catch((error: unknown) => {
      throw asBrokerUnavailable(this.url, error);
    });
  }

  /** Sends what is written (drain), then closes; subscriptions end. */
  close(): Promise<void> {
    return this.link.close();
  }
}
