// The nats:// event bus, on core NATS pub/sub (no JetStream: events are telemetry, delivered to whoever listens now
// and kept by no one, as Celery's are on every broker):
//   - an event goes to the subject `<prefix>.events.<type with '-' → '.'>` (`fennel.events.task.succeeded`,
//     `fennel.events.worker.heartbeat`): the routing key Celery gives the event on its `celeryev` exchange, so a
//     monitor that wants only task events subscribes to `<prefix>.events.task.>`; a type that would not make
//     subject tokens (empty parts, spaces, wildcards) goes to `<prefix>.events._` (the type is in the body anyway);
//   - the message is the event as JSON, as it is: Celery has no NATS transport, so there is no envelope to match;
//   - a subscribing process holds one subscription to `<prefix>.events.>` for all its handlers.
// The URL's prefix keeps apps on one server apart, as the database number does on Redis.

import { NatsPubSub } from '../clients/nats/core.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import { deliverEvent, eventRoutingKey, isList, parseEvents, payloadOf, type EventBus, type FennelEvent } from './events.ts';

/** The subject tokens of an event type: Celery's routing key (`task-succeeded` → `task.succeeded`), or '_'. */
export function eventSubjectSuffix(type: string): string {
  return /^[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$/.test(type) ? type.replace(/-/g, '.') : '_';
}

export class NatsEventBus implements EventBus {
  private readonly pubsub: NatsPubSub;
  private readonly handlers = new Set<(event: FennelEvent) => void>();
  private subscribing: Promise<void> | undefined;
  private readonly pending = new Set<Promise<void>>();
  private closed = false;

  /** The URL with any password masked. */
  readonly url: string;

  constructor(url: string, options: { connectTimeoutMs?: number | undefined } = {}) {
    this.pubsub = new NatsPubSub(url, { connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, name: `fennel-events:${process.pid}` });
    this.url = this.pubsub.url;
  }

  publish(event: FennelEvent): void {
    this.send(event);
  }

  publishMany(events: readonly FennelEvent[]): void {
    const payload = payloadOf(events);
    if (payload) this.send(payload);
  }

  /** One message: an event on <prefix>.events.<type with dots>, or a list of a group's events on ….events.task.multi. */
  private send(payload: FennelEvent | readonly FennelEvent[]): void {
    if (this.closed) return;
    let body: string;
    try {
      body = JSON.stringify(payload);
    } catch {
      return; // an event JSON cannot carry (a BigInt, a cycle) is dropped, as one the broker refuses
    }
    const suffix = isList(payload) ? eventRoutingKey(payload) : eventSubjectSuffix(String(payload.type));
    const sent = this.pubsub.send(this.pubsub.subject('events', suffix), body);
    this.pending.add(sent);
    void sent.finally(() => this.pending.delete(sent));
  }

  async subscribe(handler: (event: FennelEvent) => void): Promise<() => Promise<void>> {
    this.handlers.add(handler);
    try {
      await (this.subscribing ??= this.openSubscription());
    } catch (error) {
      this.handlers.delete(handler);
      throw error;
    }
    return async () => {
      this.handlers.delete(handler);
    };
  }

  /** One subscription for every handler; one that failed (the server away) is tried again by the next subscribe(). */
  private async openSubscription(): Promise<void> {
    try {
      await this.pubsub.subscribe(this.pubsub.subject('events', '>'), (text) => this.dispatch(text));
    } catch (error) {
      this.subscribing = undefined;
      throw error;
    }
  }

  /** Anyone may publish on the subjects: what is not a JSON event object is dropped, never thrown. */
  private dispatch(text: string): void {
    for (const event of parseEvents(text)) deliverEvent(this.handlers, event);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Events published just before close (a worker's worker-offline) are written first; closing drains them out.
    await Promise.all([...this.pending]);
    this.handlers.clear();
    await this.pubsub.close();
  }
}
