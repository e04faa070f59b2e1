// The WebSocket hub (/api/ws): pushes task state changes to the clients that asked for them.
//
// Protocol (JSON text frames; docs/gateway.md has the full table):
//   client → {"op":"subscribe","ids":[…]}     state changes of these tasks; the current state comes at once
//   client → {"op":"unsubscribe","ids":[…]}
//   client → {"op":"subscribe","all":true}    the dashboard feed: a snapshot, then task batches and stats
//   server → {"type":"task","task":TaskView}  a subscribed task changed state (final states come from the result store)
//   server → {"type":"snapshot",…} / {"type":"tasks","tasks":[…]} / {"type":"stats",…}   (dashboard feed; the
//            snapshot and stats carry the workers, queues, throughput and cache rows)
//   server → {"type":"error","error":"…"}     a frame the hub could not use; the connection stays open
// Where a subscribed task's outcome comes from: the result backend (AsyncResult.get(), pushed by Redis and
// AMQP, polled on SQLite), so it arrives whether or not workers send events; events (-E) add the states in
// between (RECEIVED, STARTED, RETRY). Sends never wait: a client that stops reading is cut off once its
// buffer passes MAX_BUFFERED_BYTES, rather than holding the gateway's memory.

import type { RawData, WebSocket } from 'ws';
import { z } from 'zod';
import type { Fennel } from '../index.ts';
import type { GatewayMetrics } from './metrics.ts';
import type { Monitor, TaskRecord } from './monitor.ts';
import { safeStringify, viewOfMeta, viewOfOutcome, type TaskView } from './views.ts';

const MAX_IDS_PER_CLIENT = 10_000;
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
/** Dashboard feed: task changes are coalesced and sent at most this often. */
const FEED_INTERVAL_MS = 250;

const clientMessage = z.discriminatedUnion('op', [
  z.object({ op: z.literal('subscribe'), ids: z.array(z.string().min(1).max(200)).max(1000).optional(), all: z.boolean().optional() }).strict(),
  z.object({ op: z.literal('unsubscribe'), ids: z.array(z.string().min(1).max(200)).max(1000).optional(), all: z.boolean().optional() }).strict(),
]);

interface Client {
  socket: WebSocket;
  ids: Set<string>;
  all: boolean;
}

/** One shared wait on the result store per task id, however many clients watch it. */
interface Watch {
  clients: Set<Client>;
  abort: AbortController;
  /** Rank of the last state pushed: the store and the events arrive by different paths, and a client must never see a task go back. */
  rank: number;
}

/** How far along a task is within one attempt; RETRY starts a new attempt. */
const RANK: Record<string, number> = { PENDING: 0, RECEIVED: 1, STARTED: 2, PROGRESS: 3, RETRY: 4 };

/** True (and the watch's rank moves on) if `state` is news for this watch's clients. */
function advances(watch: Watch, state: string): boolean {
  const rank = RANK[state];
  if (rank === undefined) return true;
  if (rank < watch.rank || (rank === watch.rank && state !== 'PROGRESS')) return false;
  watch.rank = state === 'RETRY' ? 0 : rank;
  return true;
}

export class WsHub {
  private readonly clients = new Set<Client>();
  private readonly watches = new Map<string, Watch>();
  private readonly feedPending = new Map<string, TaskRecord>();
  private feedTimer: NodeJS.Timeout | undefined;
  private statsTimer: NodeJS.Timeout | undefined;
  private readonly stopMonitor: () => void;

  constructor(
    private readonly app: Fennel,
    private readonly monitor: Monitor,
    private readonly metrics: GatewayMetrics,
  ) {
    this.stopMonitor = monitor.on({
      task: (record) => this.onTaskChange(record),
      workers: () => this.sendStats(),
    });
    this.statsTimer = setInterval(() => this.sendStats(), 1000);
    this.statsTimer.unref();
  }

  /** A new connection (already authenticated by the route's hook). */
  accept(socket: WebSocket): void {
    const client: Client = { socket, ids: new Set(), all: false };
    this.clients.add(client);
    this.metrics.wsClients.set(this.clients.size);
    socket.on('message', (data, isBinary) => this.onMessage(client, isBinary ? null : textOf(data)));
    socket.on('close', () => this.drop(client));
    socket.on('error', () => this.drop(client));
  }

  private onMessage(client: Client, text: string | null): void {
    let parsed: unknown;
    try {
      parsed = text === null ? undefined : JSON.parse(text);
    } catch {
      return this.send(client, { type: 'error', error: 'not JSON: send {"op":"subscribe","ids":[…]}' });
    }
    const message = clientMessage.safeParse(parsed);
    if (!message.success) {
      return this.send(client, { type: 'error', error: `unknown message: ${message.error.issues.map((i) => `${i.path.join('.') || 'op'}: ${i.message}`).join('; ')}` });
    }
    const { op, ids = [], all } = message.data;
    if (op === 'subscribe') {
      if (client.ids.size + ids.length > MAX_IDS_PER_CLIENT) return this.send(client, { type: 'error', error: `at most ${MAX_IDS_PER_CLIENT} task ids per connection` });
      for (const id of ids) this.watch(client, id);
      if (all && !client.all) {
        client.all = true;
        this.send(client, { type: 'snapshot', ...this.monitor.snapshot() });
      }
    } else {
      for (const id of ids) this.unwatch(client, id);
      if (all) client.all = false;
    }
  }

  private watch(client: Client, id: string): void {
    if (client.ids.has(id)) return;
    client.ids.add(id);
    let watch = this.watches.get(id);
    if (watch) {
      watch.clients.add(client);
      // The shared wait is already running; this client still gets the state as it is now.
      void this.sendCurrent(id, new Set([client]));
      return;
    }
    watch = { clients: new Set([client]), abort: new AbortController(), rank: 0 };
    this.watches.set(id, watch);
    void this.sendCurrent(id, watch.clients);
    const settled = this.app
      .asyncResult(id)
      .get({ signal: watch.abort.signal })
      .then(
        (value) => viewOfOutcome(id, { ok: true, value }),
        (error: unknown) => viewOfOutcome(id, { ok: false, error }),
      );
    void settled.then((view) => {
      if (this.watches.get(id) !== watch) return;
      this.watches.delete(id);
      if (!view) return; // aborted, or the store failed: clients can GET the task
      for (const c of watch.clients) {
        c.ids.delete(id);
        this.send(c, { type: 'task', task: view });
      }
    });
  }

  /** The state as stored now, unless it is PENDING (nothing to say yet) or already final (the wait sends it). */
  private async sendCurrent(id: string, clients: Set<Client>): Promise<void> {
    try {
      const view = viewOfMeta(await this.app.asyncResult(id).refresh());
      if (view.state === 'PENDING' || ['SUCCESS', 'FAILURE', 'REVOKED'].includes(view.state)) return;
      const watch = this.watches.get(id);
      if (!watch) return;
      if (clients === watch.clients && !advances(watch, view.state)) return;
      for (const c of clients) if (c.ids.has(id)) this.send(c, { type: 'task', task: view });
    } catch {
      // the store cannot be read now; the wait reports the outcome
    }
  }

  private unwatch(client: Client, id: string): void {
    if (!client.ids.delete(id)) return;
    const watch = this.watches.get(id);
    if (!watch) return;
    watch.clients.delete(client);
    if (watch.clients.size === 0) {
      this.watches.delete(id);
      watch.abort.abort();
    }
  }

  private onTaskChange(record: TaskRecord): void {
    // Subscribed clients: the states between submit and outcome (the outcome itself comes from the store).
    const watch = this.watches.get(record.id);
    if (watch && !['SUCCESS', 'FAILURE', 'REVOKED'].includes(record.state) && advances(watch, record.state)) {
      const view: TaskView = { id: record.id, state: record.state, ...(record.name ? { name: record.name } : {}), ...(record.worker ? { worker: record.worker } : {}) };
      for (const c of watch.clients) this.send(c, { type: 'task', task: view });
    }
    // Dashboard feed: coalesced per id, sent in batches.
    this.feedPending.set(record.id, record);
    this.feedTimer ??= setTimeout(() => this.flushFeed(), FEED_INTERVAL_MS);
  }

  private flushFeed(): void {
    this.feedTimer = undefined;
    const tasks = [...this.feedPending.values()];
    this.feedPending.clear();
    if (tasks.length === 0) return;
    let text: string | undefined;
    for (const c of this.clients) if (c.all) this.sendText(c, (text ??= safeStringify({ type: 'tasks', tasks })));
  }

  private sendStats(): void {
    let text: string | undefined;
    for (const c of this.clients) {
      if (!c.all) continue;
      text ??= safeStringify({ type: 'stats', workers: [...this.monitor.workers.values()], queues: [...this.monitor.queues.values()], throughput: this.monitor.throughputSeries(), cache: this.monitor.cacheRows() });
      this.sendText(c, text);
    }
  }

  private send(client: Client, message: unknown): void {
    this.sendText(client, safeStringify(message));
  }

  private sendText(client: Client, text: string): void {
    if (client.socket.readyState !== client.socket.OPEN) return;
    if (client.socket.bufferedAmount > MAX_BUFFERED_BYTES) {
      client.socket.close(1013, 'too slow: not reading its messages');
      this.drop(client);
      return;
    }
    client.socket.send(text);
  }

  private drop(client: Client): void {
    if (!this.clients.delete(client)) return;
    for (const id of [...client.ids]) this.unwatch(client, id);
    this.metrics.wsClients.set(this.clients.size);
  }

  close(): void {
    this.stopMonitor();
    clearInterval(this.statsTimer);
    clearTimeout(this.feedTimer);
    for (const client of [...this.clients]) {
      client.socket.close(1001, 'gateway shutting down');
      this.drop(client);
    }
    for (const watch of this.watches.values()) watch.abort.abort();
    this.watches.clear();
  }
}

function textOf(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString();
  return Buffer.isBuffer(data) ? data.toString() : Buffer.from(data).toString();
}
