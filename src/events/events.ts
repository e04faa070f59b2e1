// Worker events in Celery's event format (celery/events/event.py and the worker's task events): a flat JSON
// object with `type` ('task-succeeded', 'worker-heartbeat', …), `hostname`, `timestamp` (unix seconds),
// `utcoffset`, `pid`, `clock`, and per type: task events carry `uuid` and, for received, `name`, `args`,
// `kwargs`, `retries`, `eta`, `expires`; succeeded carries `result` and `runtime`; failed `exception` and
// `traceback`; heartbeats `freq`, `active`, `processed`, `loadavg`, `sw_ident`, `sw_ver`, `sw_sys`.
// Task events are sent only when the worker is asked to (`fennel worker -E`, as Celery's -E); worker events
// (online, heartbeat, offline) always, every `HEARTBEAT_SEC`, so a monitor sees a dead worker go offline.

export type TaskEventType = 'task-received' | 'task-started' | 'task-succeeded' | 'task-failed' | 'task-retried' | 'task-revoked' | 'task-rejected';
export type WorkerEventType = 'worker-online' | 'worker-heartbeat' | 'worker-offline';
export type EventType = TaskEventType | WorkerEventType;

/** Seconds between heartbeats (Celery's default freq is 2.0). A monitor marks a worker offline after a few missed. */
export const HEARTBEAT_SEC = 2;

export interface FennelEvent {
  type: EventType | (string & {});
  hostname: string;
  /** Unix time in seconds, as Celery's. */
  timestamp: number;
  pid?: number;
  clock?: number;
  utcoffset?: number;
  [field: string]: unknown;
}

/** Where events go: published through the broker's engine, read by monitors (the gateway, the dashboard). */
export interface EventBus {
  /** Fire and forget: an event that cannot be sent is dropped (events are telemetry, never the task's outcome). */
  publish(event: FennelEvent): void;
  /**
   * Several events of one group (`task`) as one message, as Celery's workers send their task events: a JSON list,
   * routing key `<group>.multi` (celery/events/dispatcher.py's buffer_group). Every receiver, Celery's and Fennel's,
   * hands on each event of the list in order. One event is published as itself.
   */
  publishMany(events: readonly FennelEvent[]): void;
  /** Calls `handler` for every event published from now on, by any process; returns the unsubscribe. */
  subscribe(handler: (event: FennelEvent) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/**
 * The events in text anyone could have written: a JSON event object (an object with a string `type`), or a list of
 * them (Celery's workers send task events buffered, as a list under routing key `task.multi`). What is not an event
 * is left out: a list's other elements, and anything else whole.
 */
export function parseEvents(text: string): FennelEvent[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return [];
  }
  if (Array.isArray(parsed)) return parsed.filter(isEvent);
  return isEvent(parsed) ? [parsed] : [];
}

function isEvent(value: unknown): value is FennelEvent {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && typeof (value as FennelEvent).type === 'string';
}

/** The routing key of an event (its type with `-` → `.`, as Celery's), or of a list of a group's events (`task.multi`). */
export function eventRoutingKey(events: FennelEvent | readonly FennelEvent[]): string {
  if (isList(events)) return `${String(events[0]?.type ?? 'task').split('-')[0]}.multi`;
  return String(events.type).replace(/-/g, '.');
}

/** What one message of `events` carries: a lone event as itself (its own routing key), several as their list. */
export function payloadOf(events: readonly FennelEvent[]): FennelEvent | readonly FennelEvent[] | undefined {
  return events.length > 1 ? events : events[0];
}

/** The worker that sent a message's events (kombu's `hostname` header). */
export function senderOf(payload: FennelEvent | readonly FennelEvent[]): string {
  return isList(payload) ? payload[0]!.hostname : payload.hostname;
}

/** Array.isArray, which does not narrow a readonly array out of a union. */
export function isList(events: FennelEvent | readonly FennelEvent[]): events is readonly FennelEvent[] {
  return Array.isArray(events);
}

/** Hands an event to every handler; a handler that throws (a monitor's bug) does not stop the others. */
export function deliverEvent(handlers: Iterable<(event: FennelEvent) => void>, event: FennelEvent): void {
  for (const handler of handlers) {
    try {
      handler(event);
    } catch {
      // a monitor's bug is not the bus's problem
    }
  }
}
