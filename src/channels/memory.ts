// The memory:// channel engine: payloads go straight to the subscribers in this process. Shared by every app
// of the process with the same URL (channels/index.ts), as memory:// transports are, so a publisher and a
// subscriber on two apps meet; nothing crosses a process boundary.

import type { ChannelEngine } from './engine.ts';

export class MemoryChannelEngine implements ChannelEngine {
  private readonly listeners = new Map<string, Set<(payload: string) => void>>();

  constructor(readonly url: string) {}

  async publish(channel: string, payload: string): Promise<void> {
    const listeners = this.listeners.get(channel);
    if (!listeners) return;
    // A copy: a listener that ends its subscription here (an overflow) must not change what the others get.
    for (const listener of [...listeners]) listener(payload);
  }

  async subscribe(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>> {
    let listeners = this.listeners.get(channel);
    if (!listeners) this.listeners.set(channel, (listeners = new Set()));
    // A wrapper of its own: the same function subscribed twice is two subscriptions, each ended by its own call.
    const listener = (payload: string): void => onMessage(payload);
    listeners.add(listener);
    return async () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.listeners.get(channel) === listeners) this.listeners.delete(channel);
    };
  }

  /** How many subscriptions `channel` has in this process. */
  subscriberCount(channel: string): number {
    return this.listeners.get(channel)?.size ?? 0;
  }

  async close(): Promise<void> {
    // Shared by URL within the process: the apps' subscriptions end themselves (channel.ts), nothing else to release.
  }
}
