// Prometheus metrics (prom-client), fed from worker events and the gateway's own counters; GET /metrics
// serialises them. A registry of its own, so two gateways in one process (tests) do not collide.
// The cache metrics are read at scrape time (collect) from the monitor's cache rows: the gateway's own caches and
// each online worker's last report. They are counts since each process started, so Counters (a worker that
// restarts, or a cache that closes, is a counter reset to Prometheus' rate()). The latency histogram of the
// gateway's process (cache/stats.ts) is one object shared by every gateway of the process, in each one's registry.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { cacheLatency } from '../index.ts';
import type { CacheRow } from './monitor.ts';

/** Each cache count, by its `result` label. */
const CACHE_RESULTS = [
  ['hit', 'hits'],
  ['miss', 'misses'],
  ['error', 'errors'],
  ['refused', 'refused'],
  ['set', 'sets'],
] as const;

export class GatewayMetrics {
  readonly registry = new Registry();
  /** Task events by task name and state (RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED, REJECTED). */
  readonly tasks = new Counter({ name: 'fennel_tasks_total', help: 'Task state changes seen in worker events, by task name and state', labelNames: ['name', 'state'], registers: [this.registry] });
  readonly submitted = new Counter({ name: 'fennel_gateway_submissions_total', help: 'Tasks submitted through the gateway and confirmed by the broker', labelNames: ['name'], registers: [this.registry] });
  readonly runtime = new Histogram({
    name: 'fennel_task_runtime_seconds',
    help: 'Run time of tasks that finished (task-succeeded and task-failed events), by task name',
    labelNames: ['name'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({ name: 'fennel_queue_depth', help: 'Messages waiting in each known queue (ready and scheduled)', labelNames: ['queue'], registers: [this.registry] });
  readonly workers = new Gauge({ name: 'fennel_workers', help: 'Workers by state: online (heartbeat within 3 intervals) or offline', labelNames: ['state'], registers: [this.registry] });
  readonly wsClients = new Gauge({ name: 'fennel_gateway_websocket_clients', help: 'Open WebSocket connections', registers: [this.registry] });
  /** Where the cache rows come from at scrape time (the monitor sets it); none until then. */
  cacheRows: () => CacheRow[] = () => [];
  readonly cacheOperations = new Counter({
    name: 'fennel_cache_operations_total',
    help: "Cache operations by source (gateway, or a worker's hostname), engine and result: hit, miss (errors included), error, refused (value too large or not encodable), set",
    labelNames: ['source', 'engine', 'result'],
    registers: [this.registry],
    collect: () => {
      this.cacheOperations.reset();
      for (const row of this.cacheRows()) {
        for (const [result, field] of CACHE_RESULTS) this.cacheOperations.inc({ source: row.source, engine: row.engine, result }, row[field]);
      }
    },
  });
  readonly cacheMean = new Gauge({
    name: 'fennel_cache_operation_mean_seconds',
    help: 'Mean time of a cache operation since the source started, by source and engine',
    labelNames: ['source', 'engine'],
    registers: [this.registry],
    collect: () => {
      this.cacheMean.reset();
      for (const row of this.cacheRows()) this.cacheMean.set({ source: row.source, engine: row.engine }, row.meanMs / 1000);
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'fennel_gateway_' });
    // A histogram of the cache's own making (src/cache/stats.ts: name, help, type, get()), which registries
    // serialise as they do theirs; prom-client's type asks for the methods of its own classes, which it never calls.
    this.registry.registerMetric(cacheLatency as unknown as Metric);
  }
}
