// Prometheus metrics (prom-client), fed from worker events and the gateway's own counters; GET /metrics
// serialises them. A registry of its own, so two gateways in one process (tests) do not collide.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'fennel_gateway_' });
  }
}
