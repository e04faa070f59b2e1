// The contract every channel engine implements: move opaque payloads (JSON text) from publishers to the
// subscribers of a channel name, through the broker's own engine. Everything else (the codec and its checks,
// buffering, overflow, ending an iteration) is written once above it, in channel.ts.
//
// What an engine promises:
//   - at most once: a payload reaches each subscription that is live when it is published, once or not at all
//     (never twice: nothing is resent after it may have gone out);
//   - per publisher, in order: payloads published through one engine reach each subscription in the order of
//     the publish() calls (the engine keeps its writes in call order, awaited or not);
//   - live means established on the broker: once subscribe() has resolved, a payload whose publish() is called
//     afterwards, by any process, is delivered to it.

export interface ChannelEngine {
  /** The broker URL, any password masked. */
  readonly url: string;
  /**
   * Sends `payload` to the subscribers of `channel` live now, or to no one. Resolves once the broker has taken it
   * (Redis: PUBLISH answered; RabbitMQ: routed and confirmed; SQLite: committed). Rejects with
   * BrokerUnavailableError if it could not be sent; never sends it twice.
   */
  publish(channel: string, payload: string): Promise<void>;
  /**
   * Calls `onMessage` with every payload published to `channel` from now on, until the returned function is
   * called. Resolves once the subscription is live on the broker; rejects (and keeps nothing) if it cannot be.
   * `onMessage` runs synchronously on the engine's event and must not throw.
   */
  subscribe(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>>;
  /** Releases the engine's connections. Subscriptions end silently; an engine shared by URL (memory://) stays open. */
  close(): Promise<void>;
}
