// The nats:// channel engine, on core NATS pub/sub: what a channel promises (at most once, to the subscriptions live
// when a message is published, in order per publisher) is what core NATS does, so no JetStream stream is made.
//   - channel `<name>` is the subject `<prefix>.ch.<subjectToken(name)>`: one token, escaped injectively
//     (clients/nats/core.ts: '.' → '_2e', ':' → '_3a', '_' → '__'), so `a.b`, `a:b` and `a_2eb` are three subjects
//     and no name can reach a wildcard or another channel's subject; `<prefix>.ch.>` is every channel of the app;
//   - the message is the value's JSON text as it is (no envelope: nothing but Fennel reads it).
// One connection per engine: publishes go out on it in call order, and each resolves once the server has it (one
// PING per batch). Each subscription is a NATS subscription of its own, live once the server has answered a PING
// sent after it; ending it unsubscribes it. Buffers and overflow are the shared code's (channel.ts).
// After a reconnect the client subscribes again by itself; what was published meanwhile is lost to those
// subscribers, and a message written while the connection was away is sent once, or not at all.

import { NatsPubSub, subjectToken } from '../clients/nats/core.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import type { ChannelEngine } from './engine.ts';

export class NatsChannelEngine implements ChannelEngine {
  /** The URL with any password masked. */
  readonly url: string;
  private readonly pubsub: NatsPubSub;
  /** Live subscriptions by channel name. */
  private readonly live = new Map<string, number>();

  constructor(url: string, options: { connectTimeoutMs?: number | undefined } = {}) {
    this.pubsub = new NatsPubSub(url, { connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, name: `fennel-channels:${process.pid}` });
    this.url = this.pubsub.url;
  }

  /** `<prefix>.ch.<token>`: the subject of `channel`. */
  subjectOf(channel: string): string {
    return this.pubsub.subject('ch', subjectToken(channel));
  }

  publish(channel: string, payload: string): Promise<void> {
    return this.pubsub.publish(this.subjectOf(channel), payload);
  }

  async subscribe(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>> {
    const stop = await this.pubsub.subscribe(this.subjectOf(channel), (payload) => onMessage(payload));
    this.live.set(channel, (this.live.get(channel) ?? 0) + 1);
    let ended = false;
    return async () => {
      if (ended) return;
      ended = true;
      stop();
      const left = (this.live.get(channel) ?? 1) - 1;
      if (left > 0) this.live.set(channel, left);
      else this.live.delete(channel);
    };
  }

  /** How many subscriptions to `channel` this engine holds on the server. */
  subscriberCount(channel: string): number {
    return this.live.get(channel) ?? 0;
  }

  async close(): Promise<void> {
    this.live.clear();
    await this.pubsub.close();
  }
}
