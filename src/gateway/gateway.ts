// The gateway: a fastify server in front of a Fennel app. It accepts task calls over HTTP, answers as soon as
// the broker has them, pushes outcomes over a WebSocket, serves the dashboard and Prometheus metrics.
// Built on Fennel's public API only (../index.ts), as any web application of a user would be, and it never
// blocks the event loop: every broker and store call is awaited, and nothing waits for a task to run.
//
//   /api/tasks/:name  POST submit        /api/tasks/:id  GET state · DELETE revoke        /api/ws  push
//   /api/schedules    GET the schedules, their last and next fires, the leading beat
//   /api/actors       GET the actors in the name server (host, state, calls) and the live actor hosts
//   /api/cache        GET the cache counts of the gateway's process and of each online worker, by engine
//   /api/control/:command  POST remote control (inspect, pool-grow, shutdown, …; changes need a token)
//   /dashboard/       the live monitor   /metrics        Prometheus                       /healthz liveness + broker
//   /                 the application's own pages, with --site <dir>

import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import fastify, { type FastifyInstance } from 'fastify';
import websocket from '@fastify/websocket';
import type { Fennel } from '../index.ts';
import { tokenCheck } from './auth.ts';
import { HttpError, toHttp } from './http-errors.ts';
import { GatewayMetrics } from './metrics.ts';
import { Monitor } from './monitor.ts';
import { registerActorRoutes } from './routes/actors.ts';
import { registerControlRoutes } from './routes/control.ts';
import { registerScheduleRoutes } from './routes/schedules.ts';
import { registerTaskRoutes } from './routes/tasks.ts';
import { serveFolder } from './static.ts';
import { safeStringify } from './views.ts';
import { WsHub } from './ws.ts';

export interface GatewayOptions {
  /** Interface to bind. Default 127.0.0.1: exposing the gateway beyond this machine is a decision to make explicitly. */
  host?: string;
  /** Default 8888; 0 picks a free port (see `url` after listen()). */
  port?: number;
  /** Bearer token required on every API call, /metrics and the WebSocket. Default: FENNEL_GATEWAY_TOKEN, if set. */
  token?: string;
  /** Largest request body; bigger is 413. Default 1 MiB. */
  bodyLimitBytes?: number;
  /** How long a submission waits for the broker to confirm before answering 503. Default 10 s. */
  publishTimeoutMs?: number;
  /** A folder of static pages served at / (an application's front end, such as examples/wyndor/public). */
  site?: string;
  /** Extra queues to show on the dashboard and in metrics (the default queue and workers' queues are known already). */
  queues?: string[];
  /** fastify's logger level; default 'warn' (no line per request). */
  logLevel?: string;
}

export interface Gateway {
  readonly server: FastifyInstance;
  readonly monitor: Monitor;
  /** Starts listening; resolves with the base URL, e.g. http://127.0.0.1:8888 */
  listen(): Promise<string>;
  close(): Promise<void>;
}

const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), 'dashboard');

export async function createGateway(app: Fennel, options: GatewayOptions = {}): Promise<Gateway> {
  const token = options.token ?? (process.env['FENNEL_GATEWAY_TOKEN'] || undefined);
  const authorized = tokenCheck(token);
  const metrics = new GatewayMetrics();
  const monitor = new Monitor(app, metrics, { ...(options.queues ? { queues: options.queues } : {}) });
  const server = fastify({
    bodyLimit: options.bodyLimitBytes ?? 1024 * 1024,
    logger: { level: options.logLevel ?? 'warn' },
    // A Fennel task id is a UUID; a long URL is a client error, not a reason to allocate.
    routerOptions: { maxParamLength: 200 },
    // On close, end keep-alive connections too, so a stop never waits for clients to hang up.
    forceCloseConnections: true,
  });
  server.setReplySerializer((payload) => safeStringify(payload));
  server.setErrorHandler((error, request, reply) => {
    const { status, body, headers } = toHttp(error);
    if (status >= 500 && status !== 503) request.log.error({ err: error }, 'request failed');
    return reply.code(status).headers(headers).send(body);
  });
  server.setNotFoundHandler((request, reply) => reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}`, code: 'NOT_FOUND' }));

  // Auth: every API call, /metrics and the WebSocket upgrade (a GET that passes through this hook too).
  server.addHook('onRequest', async (request) => {
    const path = request.url.split('?')[0]!;
    if (!path.startsWith('/api/') && path !== '/metrics') return;
    const query = request.query as { token?: unknown };
    if (!authorized(request.headers.authorization, typeof query.token === 'string' ? query.token : undefined)) {
      throw new HttpError(401, 'missing or wrong bearer token (Authorization: Bearer <FENNEL_GATEWAY_TOKEN>)', 'UNAUTHORIZED', { 'www-authenticate': 'Bearer' });
    }
  });

  await server.register(websocket, { options: { maxPayload: 64 * 1024 } });
  const hub = new WsHub(app, monitor, metrics);
  server.get('/api/ws', { websocket: true }, (socket) => hub.accept(socket));

  registerTaskRoutes(server, { app, monitor, publishTimeoutMs: options.publishTimeoutMs ?? 10_000 });
  registerScheduleRoutes(server, { app });
  registerActorRoutes(server, { app });
  registerControlRoutes(server, { app, tokenConfigured: Boolean(token) });

  // The rows of /metrics' fennel_cache_* as JSON (the dashboard gets the same rows over the WebSocket).
  server.get('/api/cache', () => ({ cache: monitor.cacheRows() }));

  server.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  server.get('/healthz', async (_request, reply) => {
    // Alive, and can it reach the broker? A depth read is the cheapest question every engine answers.
    try {
      await Promise.race([app.transport.depth(app.config.defaultQueue), new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 2 s')), 2000).unref())]);
      return { ok: true, broker: 'up', events: monitor.eventsError ? `down: ${monitor.eventsError}` : 'up' };
    } catch (error) {
      return reply.code(503).header('retry-after', '5').send({ ok: false, broker: `down: ${(error as Error).message}` });
    }
  });

  serveFolder(server, '/dashboard/', DASHBOARD_DIR);
  if (options.site) serveFolder(server, '/', options.site);
  else server.get('/', (_request, reply) => reply.redirect('/dashboard/'));

  await monitor.start();

  return {
    server,
    monitor,
    async listen() {
      return server.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8888 });
    },
    async close() {
      hub.close();
      await monitor.stop();
      await server.close();
    },
  };
}
