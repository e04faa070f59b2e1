// The in-process event bus: events reach subscribers in the same process only. For memory:// apps and tests.

import { deliverEvent, type EventBus, type FennelEvent } from './events.ts';

export class LocalEventBus implements EventBus {
  private readonly handlers = new Set<(event: FennelEvent) => void>();

  publish(event: FennelEvent): void {
    deliverEvent(this.handlers, event);
  }

  publishMany(events: readonly FennelEvent[]): void {
    for (const event of events) deliverEvent(this.handlers, event);
  }

  async subscribe(handler: (event: FennelEvent) => void): Promise<() => Promise<void>> {
    this.handlers.add(handler);
    return async () => void this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    // Shared by every app of the process with the same URL (as memory:// engines are): nothing to release.
  }
}
