// The monitor: what the gateway knows about the cluster, built from worker events (Celery's format) and queue
// depths. It owns the state the dashboard shows (workers, queues with rates, recent tasks, throughput), keeps
// the Prometheus metrics current, and tells listeners (the WebSocket hub) what changed.
// Bounded everywhere: recent tasks, throughput history and offline workers are capped or expire, so a busy
// cluster cannot grow the gateway's memory.

import { processCacheStats, type Fennel, type FennelEvent } from '../index.ts';
import type { GatewayMetrics } from './metrics.ts';

/** A worker is offline when this many heartbeat intervals pass without one (Celery's monitors use a similar rule). */
export const MISSED_HEARTBEATS = 3;
const RECENT_TASKS = 2_000;
const THROUGHPUT_SECONDS = 120;
const FORGET_OFFLINE_MS = 10 * 60_000;
/** Anyone who can publish on the bus can name queues and tasks: caps keep sampling and metric labels bounded. */
const MAX_QUEUES = 100;
const MAX_TASK_NAMES = 500;
/** A worker reports a cache per engine (three engines today); more is junk. Cache rows come from this many sources at most. */
export const MAX_CACHE_REPORTS = 8;
export const MAX_CACHE_SOURCES = 100;
const MAX_LABEL_CHARS = 128;
const MAX_URL_CHARS = 500;
/** An engine's name as a worker reports it: 'lru', 'redis', 'memcached' (a metric label: short and plain). */
const ENGINE_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

export interface WorkerInfo {
  id: string;
  hostname: string;
  pid: number | null;
  pool: string | null;
  concurrency: number | null;
  queues: string[];
  processed: number;
  active: number;
  loadavg: number[];
  freq: number;
  /** Gateway clock (ms) when the last event came: immune to clock skew between machines. */
  lastSeen: number;
  online: boolean;
  version: string | null;
  /** The caches open in the worker's process, by engine, as of its last event that carried them. */
  cache: CacheReport[];
}

/** One engine's counts in one process (src/cache/stats.ts CacheStats.toJSON), as the worker's events carry them. */
export interface CacheReport {
  engine: string;
  /** The engine's URL, password masked (user input: shown as text only). */
  url: string;
  hits: number;
  /** Errors are misses too. */
  misses: number;
  errors: number;
  refused: number;
  sets: number;
  operations: number;
  meanMs: number;
}

/** A row of the cache metrics and the dashboard's Cache panel: one engine of one source ('gateway', or a worker's hostname). */
export interface CacheRow extends CacheReport {
  source: string;
}

export interface TaskRecord {
  id: string;
  name: string | null;
  state: string;
  args?: unknown;
  kwargs?: unknown;
  result?: unknown;
  exception?: unknown;
  traceback?: unknown;
  runtime?: number;
  worker?: string;
  queue?: string | null;
  retries?: number;
  received?: number;
  started?: number;
  finished?: number;
  updated: number;
}

export interface QueueInfo {
  queue: string;
  depth: number;
  /** Messages per second arriving and leaving, over the last sampling interval. */
  rateIn: number;
  rateOut: number;
}

export interface ThroughputPoint {
  t: number;
  succeeded: number;
  failed: number;
}

/** Event type → the state a task is in after it. */
const EVENT_STATE: Record<string, string> = {
  'task-received': 'RECEIVED',
  'task-started': 'STARTED',
  'task-succeeded': 'SUCCESS',
  'task-failed': 'FAILURE',
  'task-retried': 'RETRY',
  'task-revoked': 'REVOKED',
  'task-rejected': 'REJECTED',
};

export interface MonitorListener {
  task?(record: TaskRecord, event: FennelEvent): void;
  workers?(): void;
}

export class Monitor {
  readonly workers = new Map<string, WorkerInfo>();
  readonly tasks = new Map<string, TaskRecord>();
  readonly queues = new Map<string, QueueInfo>();
  private readonly throughput: ThroughputPoint[] = [];
  /** Tasks that left each queue since the last depth sample (finished, by the queue they came from). */
  private readonly leftSinceSample = new Map<string, number>();
  private readonly listeners = new Set<MonitorListener>();
  private unsubscribe: (() => Promise<void>) | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private sampler: NodeJS.Timeout | undefined;
  private lastSample = Date.now();
  private sampling = false;
  private stopped = false;
  /** Why events are not arriving (the broker could not be reached), for /healthz. */
  eventsError: string | null = null;

  constructor(
    private readonly app: Fennel,
    private readonly metrics: GatewayMetrics,
    private readonly options: { queues?: string[]; sampleMs?: number } = {},
  ) {
    for (const queue of [app.config.defaultQueue, ...(options.queues ?? [])]) this.knowQueue(queue);
    metrics.cacheRows = () => this.cacheRows();
  }

  async start(): Promise<void> {
    this.ticker = setInterval(() => this.tick(), 1000);
    this.sampler = setInterval(() => void this.sample(), this.options.sampleMs ?? 2000);
    // Wait a little for the subscription, so events sent right after start are seen; but a broker that is down
    // must not keep the gateway from serving (it answers 503 and /healthz says why meanwhile).
    await Promise.race([this.subscribe(), new Promise((resolve) => setTimeout(resolve, 3000).unref())]);
    void this.sample();
  }

  /** Subscribes to the app's events; if the broker cannot be reached, tries again every few seconds. */
  private async subscribe(): Promise<void> {
    if (this.stopped) return;
    try {
      this.unsubscribe = await this.app.events.subscribe((event) => this.onEvent(event));
      this.eventsError = null;
    } catch (error) {
      this.eventsError = (error as Error).message;
      setTimeout(() => void this.subscribe(), 5000).unref();
    }
  }

  on(listener: MonitorListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  submitted(name: string): void {
    this.metrics.submitted.inc({ name });
  }

  /** One event in. Bad events (any process can publish on the bus) are ignored field by field, never thrown. */
  onEvent(event: FennelEvent): void {
    if (typeof event.type !== 'string') return;
    if (event.type.startsWith('worker-')) this.onWorkerEvent(event);
    else if (event.type.startsWith('task-')) this.onTaskEvent(event);
  }

  private onWorkerEvent(event: FennelEvent): void {
    const pid = typeof event.pid === 'number' ? event.pid : null;
    const id = `${String(event.hostname)}:${pid ?? '?'}`;
    const known = this.workers.get(id);
    const num = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);
    const worker: WorkerInfo = {
      id,
      hostname: String(event.hostname),
      pid,
      pool: typeof event['pool'] === 'string' ? event['pool'] : (known?.pool ?? null),
      concurrency: typeof event['concurrency'] === 'number' ? event['concurrency'] : (known?.concurrency ?? null),
      queues: Array.isArray(event['queues']) ? (event['queues'] as unknown[]).filter((q): q is string => typeof q === 'string') : (known?.queues ?? []),
      processed: num(event['processed'], known?.processed ?? 0),
      active: num(event['active'], known?.active ?? 0),
      loadavg: Array.isArray(event['loadavg']) ? (event['loadavg'] as unknown[]).filter((n): n is number => typeof n === 'number') : (known?.loadavg ?? []),
      freq: num(event['freq'], known?.freq ?? 2),
      lastSeen: Date.now(),
      online: event.type !== 'worker-offline',
      version: typeof event['sw_ver'] === 'string' ? event['sw_ver'] : (known?.version ?? null),
      cache: parseCacheReports(event['cache']) ?? known?.cache ?? [],
    };
    this.workers.set(id, worker);
    for (const queue of worker.queues) this.knowQueue(queue);
    if (!known || known.online !== worker.online) this.workersChanged();
  }

  private onTaskEvent(event: FennelEvent): void {
    const id = event['uuid'];
    const state = EVENT_STATE[event.type];
    if (typeof id !== 'string' || !state) return;
    this.touchWorker(event);
    const now = Date.now();
    let record = this.tasks.get(id);
    if (record) this.tasks.delete(id); // re-inserted below: Map order is recency order
    record ??= { id, name: null, state, updated: now };
    record.state = state;
    record.updated = now;
    record.worker = String(event.hostname);
    if (typeof event['name'] === 'string') record.name = event['name'];
    switch (event.type) {
      case 'task-received':
        record.args = event['args'];
        record.kwargs = event['kwargs'];
        record.received = now;
        if (typeof event['queue'] === 'string') record.queue = event['queue'];
        if (typeof event['retries'] === 'number') record.retries = event['retries'];
        break;
      case 'task-started':
        record.started = now;
        break;
      case 'task-succeeded':
      case 'task-failed': {
        record.finished = now;
        if (event.type === 'task-succeeded') record.result = event['result'];
        else {
          record.exception = event['exception'];
          record.traceback = event['traceback'];
        }
        const runtime = event['runtime'];
        if (typeof runtime === 'number' && Number.isFinite(runtime) && runtime >= 0) {
          record.runtime = runtime;
          this.metrics.runtime.observe({ name: this.label(record.name) }, runtime);
        }
        this.countFinished(event.type === 'task-succeeded', record);
        break;
      }
      case 'task-revoked':
      case 'task-rejected':
        record.finished = now;
        this.countFinished(null, record);
        break;
      default:
        break;
    }
    this.metrics.tasks.inc({ name: this.label(record.name), state });
    this.tasks.set(id, record);
    if (this.tasks.size > RECENT_TASKS) this.tasks.delete(this.tasks.keys().next().value!);
    for (const listener of this.listeners) listener.task?.(record, event);
  }

  /** Any event from a worker shows it is alive (a monitor started after its worker-online learns of it here). */
  private touchWorker(event: FennelEvent): void {
    const pid = typeof event.pid === 'number' ? event.pid : null;
    const id = `${String(event.hostname)}:${pid ?? '?'}`;
    const known = this.workers.get(id);
    if (known) {
      known.lastSeen = Date.now();
      if (!known.online) {
        known.online = true;
        this.workersChanged();
      }
      return;
    }
    this.onWorkerEvent({ ...event, type: 'worker-heartbeat' });
  }

  private countFinished(succeeded: boolean | null, record: TaskRecord): void {
    if (record.queue) this.leftSinceSample.set(record.queue, (this.leftSinceSample.get(record.queue) ?? 0) + 1);
    if (succeeded === null) return;
    const second = Math.floor(Date.now() / 1000);
    let point = this.throughput.at(-1);
    if (!point || point.t !== second) {
      point = { t: second, succeeded: 0, failed: 0 };
      this.throughput.push(point);
      while (this.throughput.length > THROUGHPUT_SECONDS) this.throughput.shift();
    }
    if (succeeded) point.succeeded++;
    else point.failed++;
  }

  /** Every second: workers whose heartbeats stopped go offline; long-offline ones are forgotten. */
  private tick(): void {
    const now = Date.now();
    let changed = false;
    for (const worker of this.workers.values()) {
      if (worker.online && now - worker.lastSeen > worker.freq * 1000 * MISSED_HEARTBEATS) {
        worker.online = false;
        changed = true;
      }
      if (!worker.online && now - worker.lastSeen > FORGET_OFFLINE_MS) {
        this.workers.delete(worker.id);
        changed = true;
      }
    }
    if (changed) this.workersChanged();
  }

  private workersChanged(): void {
    let online = 0;
    for (const worker of this.workers.values()) if (worker.online) online++;
    this.metrics.workers.set({ state: 'online' }, online);
    this.metrics.workers.set({ state: 'offline' }, this.workers.size - online);
    for (const listener of this.listeners) listener.workers?.();
  }

  private knowQueue(queue: string): void {
    if (!this.queues.has(queue) && this.queues.size < MAX_QUEUES) this.queues.set(queue, { queue, depth: 0, rateIn: 0, rateOut: 0 });
  }

  private readonly taskNames = new Set<string>();
  /** The metric label for a task name: the name, or 'other' once MAX_TASK_NAMES distinct names were seen. */
  private label(name: string | null): string {
    if (name === null) return 'unknown';
    if (this.taskNames.has(name)) return name;
    if (this.taskNames.size >= MAX_TASK_NAMES) return 'other';
    this.taskNames.add(name);
    return name;
  }

  /** Reads each known queue's depth. Rates follow from conservation: in = out + Δdepth. */
  private async sample(): Promise<void> {
    if (this.sampling || this.stopped) return;
    this.sampling = true;
    try {
      const now = Date.now();
      const seconds = Math.max((now - this.lastSample) / 1000, 0.001);
      this.lastSample = now;
      for (const info of this.queues.values()) {
        let depth: number;
        try {
          depth = await this.app.transport.depth(info.queue);
        } catch {
          continue; // broker down: keep the last known depth
        }
        const left = this.leftSinceSample.get(info.queue) ?? 0;
        this.leftSinceSample.delete(info.queue);
        info.rateOut = round(left / seconds);
        info.rateIn = round(Math.max(0, left + depth - info.depth) / seconds);
        info.depth = depth;
        this.metrics.queueDepth.set({ queue: info.queue }, depth);
      }
    } finally {
      this.sampling = false;
    }
  }

  /** The throughput of the last THROUGHPUT_SECONDS, one point per second (zeros filled in). */
  throughputSeries(): ThroughputPoint[] {
    const now = Math.floor(Date.now() / 1000);
    const byT = new Map(this.throughput.map((p) => [p.t, p]));
    return Array.from({ length: 60 }, (_, i) => byT.get(now - 59 + i) ?? { t: now - 59 + i, succeeded: 0, failed: 0 });
  }

  /**
   * The cache counts of the gateway's own process (source 'gateway') and of each online worker (source: its
   * hostname), summed by source and engine (two workers of one hostname make one row), at most MAX_CACHE_SOURCES
   * sources: what /metrics and the dashboard show.
   */
  cacheRows(): CacheRow[] {
    const rows = new Map<string, CacheRow>();
    const sources = new Set<string>();
    const add = (source: string, report: CacheReport): void => {
      if (!sources.has(source)) {
        if (sources.size >= MAX_CACHE_SOURCES) return;
        sources.add(source);
      }
      const key = `${source}\0${report.engine}`;
      const row = rows.get(key);
      if (!row) {
        rows.set(key, { source, ...report });
        return;
      }
      const operations = row.operations + report.operations;
      row.meanMs = operations > 0 ? (row.meanMs * row.operations + report.meanMs * report.operations) / operations : 0;
      row.operations = operations;
      row.hits += report.hits;
      row.misses += report.misses;
      row.errors += report.errors;
      row.refused += report.refused;
      row.sets += report.sets;
    };
    for (const report of parseCacheReports(processCacheStats()) ?? []) add('gateway', report);
    for (const worker of this.workers.values()) {
      if (!worker.online) continue;
      for (const report of worker.cache) add(worker.hostname.slice(0, MAX_LABEL_CHARS), report);
    }
    return [...rows.values()];
  }

  snapshot(): { workers: WorkerInfo[]; queues: QueueInfo[]; tasks: TaskRecord[]; throughput: ThroughputPoint[]; cache: CacheRow[] } {
    return { workers: [...this.workers.values()], queues: [...this.queues.values()], tasks: [...this.tasks.values()].slice(-500), throughput: this.throughputSeries(), cache: this.cacheRows() };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.ticker);
    clearInterval(this.sampler);
    await this.unsubscribe?.();
  }
}

/**
 * A worker event's `cache` field: each engine's counts, checked field by field (any process can publish events).
 * Entries without a plain engine name are dropped, a count that is not a finite number ≥ 0 reads as 0, at most
 * MAX_CACHE_REPORTS entries are kept. Undefined when the field is not a list (absent: the last report stands).
 */
export function parseCacheReports(value: unknown): CacheReport[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
  const reports: CacheReport[] = [];
  for (const entry of value as unknown[]) {
    if (reports.length >= MAX_CACHE_REPORTS) break;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) continue;
    const e = entry as Record<string, unknown>;
    if (typeof e['engine'] !== 'string' || !ENGINE_NAME.test(e['engine'])) continue;
    reports.push({
      engine: e['engine'],
      url: typeof e['url'] === 'string' ? e['url'].slice(0, MAX_URL_CHARS) : '',
      hits: count(e['hits']),
      misses: count(e['misses']),
      errors: count(e['errors']),
      refused: count(e['refused']),
      sets: count(e['sets']),
      operations: count(e['operations']),
      meanMs: count(e['meanMs']),
    });
  }
  return reports;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
