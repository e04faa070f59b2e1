// `fennel gateway --app ./tasks.ts [--port 8888] [--host 127.0.0.1] [--site dir]`: serve the app's exposed
// tasks over HTTP and a WebSocket, the dashboard at /dashboard and metrics at /metrics, until stopped.
// The ready line ("gateway listening on <url>") is printed once the port is bound: scripts and tests wait for it.

import type { Command } from 'commander';
import { createGateway } from '../gateway/gateway.ts';
import { appFrom, fail, guard } from './common.ts';
import { maskUrl } from '../util/url.ts';

interface Flags {
  app?: string;
  broker?: string;
  backend?: string;
  port: string;
  host: string;
  site?: string;
  bodyLimit: string;
  publishTimeoutMs: string;
  queues?: string;
  loglevel: string;
}

export function registerGateway(program: Command): void {
  program
    .command('gateway')
    .description('serve exposed tasks over HTTP + WebSocket, the live dashboard (/dashboard) and Prometheus metrics (/metrics)')
    .requiredOption('-A, --app <path>', 'tasks module that exports a Fennel app (tasks with expose: true are callable)')
    .option('-b, --broker <url>', 'broker URL (default: the app\'s, or FENNEL_BROKER_URL)')
    .option('--backend <url>', "result backend URL (default: the app's; with -b, the broker if the app's was): where task states, and beat's schedules, are read")
    .option('-p, --port <n>', 'port to listen on (0: any free port)', '8888')
    .option('-H, --host <address>', 'interface to bind (0.0.0.0 to accept other machines)', '127.0.0.1')
    .option('--site <dir>', 'a folder of static pages to serve at /')
    .option('--body-limit <bytes>', 'largest request body (bigger is 413)', String(1024 * 1024))
    .option('--publish-timeout-ms <ms>', 'how long a submission waits for the broker to confirm before answering 503', '10000')
    .option('-Q, --queues <list>', 'extra queues to show on the dashboard and in /metrics')
    .option('-l, --loglevel <level>', 'trace | debug | info | warn | error', 'warn')
    .action((flags: Flags) => guard(() => runGateway(flags)));
}

async function runGateway(flags: Flags): Promise<void> {
  const port = Number(flags.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port must be 0 to 65535 (got '${flags.port}')`);
  const bodyLimit = Number(flags.bodyLimit);
  if (!Number.isInteger(bodyLimit) || bodyLimit < 1) fail(`--body-limit must be a positive number of bytes (got '${flags.bodyLimit}')`);
  const app = await appFrom({ app: flags.app!, ...(flags.broker ? { broker: flags.broker } : {}), ...(flags.backend ? { backend: flags.backend } : {}) });
  const gateway = await createGateway(app, {
    host: flags.host,
    port,
    bodyLimitBytes: bodyLimit,
    publishTimeoutMs: Number(flags.publishTimeoutMs) || 10_000,
    logLevel: flags.loglevel,
    ...(flags.site ? { site: flags.site } : {}),
    ...(flags.queues ? { queues: flags.queues.split(',').map((q) => q.trim()).filter(Boolean) } : {}),
  });
  let url: string;
  try {
    url = await gateway.listen();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') fail(`port ${port} on ${flags.host} is in use; pick another with --port`);
    if (code === 'EACCES') fail(`not allowed to listen on ${flags.host}:${port}; pick a port above 1023`);
    throw error;
  }
  const auth = process.env['FENNEL_GATEWAY_TOKEN'] ? ' (bearer token required)' : '';
  process.stdout.write(`gateway listening on ${url}${auth}; dashboard ${url}/dashboard/; broker ${maskUrl(app.config.broker)}\n`);
  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(130);
    stopping = true;
    // Open connections (keep-alive, WebSockets) are closed by the gateway; a stuck one does not hold the exit.
    setTimeout(() => process.exit(0), 5000).unref();
    void gateway
      .close()
      .then(() => app.close())
      .finally(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
