// `fennel worker --app ./tasks.ts [-c N] [-Q q1,q2] [-P process|thread|async] [-n name@%h] [-b URL]`: run tasks
// until stopped. Logs are readable on a terminal (a banner, then one line per event) and JSON otherwise.
// Flags, names and log formats: docs/worker.md.
// SIGTERM or the first SIGINT: warm shutdown (finish within the grace period, exit 0).
// A second SIGINT: cold shutdown (hand back what is held and exit at once, code 130).

import type { Command } from 'commander';
import { Worker, type PoolKind } from '../worker/worker.ts';
import { DEFAULT_NODENAME } from '../worker/hostname.ts';
import { loadAppWithUrls } from '../worker/load-app-with-urls.ts';
import { defaultLogFormat, LOG_FORMATS, type LogFormat } from '../worker/log.ts';
import { maskUrl } from '../util/url.ts';
import { checkUrl } from '../app/config.ts';
import { fail, guard, type AppFlags } from './common.ts';

interface Flags extends AppFlags {
  hostname: string;
  logFormat?: string;
  concurrency?: string;
  queues?: string;
  broadcastQueues?: string;
  pool: string;
  loglevel: string;
  grace: string;
  prefetchMultiplier: string;
  events?: boolean;
  maxTasksPerChild?: string;
  maxMemoryPerChild?: string;
  beat?: boolean;
  autoscale?: string;
  autoscaleKeepalive?: string;
  withoutControl?: boolean;
  actors?: boolean;
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('run a worker that consumes queues and runs tasks')
    .requiredOption('-A, --app <path>', 'tasks module that exports a Fennel app')
    .option('-b, --broker <url>', "broker URL (default: the app's, from its code or $FENNEL_BROKER_URL)")
    .option('--backend <url>', "result backend URL (default: the app's; with -b, the broker if the app's was)")
    .option('-n, --hostname <name>', 'node name in events, results and the dashboard: %h hostname, %n its first label, %d its domain, %p pid, %% a %', DEFAULT_NODENAME)
    .option('-c, --concurrency <n>', 'tasks run at once (default: number of CPUs)')
    .option('-Q, --queues <list>', "comma-separated queues to consume (default: the app's default queue)")
    .option('--broadcast-queues <list>', "comma-separated broadcast queues to receive a copy of every message of (default: the app's broadcastQueue and its broadcast tasks' queues; '' for none)")
    .option('-P, --pool <kind>', 'process | thread | async', 'process')
    .option('-l, --loglevel <level>', 'trace | debug | info | warn | error', 'info')
    .option('--log-format <format>', 'pretty (a banner, then a line per event) | json (default: pretty on a terminal, else json)')
    .option('--grace <seconds>', 'on shutdown, how long running tasks may take to finish', '30')
    .option('--prefetch-multiplier <n>', 'deliveries held per slot', '4')
    .option('--max-tasks-per-child <n>', 'replace a process or thread slot after it has run n tasks')
    .option('--max-memory-per-child <mb>', 'replace a process slot after a task that leaves it above this resident memory (MB)')
    .option('-B, --beat', "also run a beat that fires the app's schedules (Celery's -B); any number may run, one leads")
    .option('--autoscale <max,min>', 'grow the pool toward MAX slots while messages wait, shrink it toward MIN once idle (replaces -c)')
    .option('--autoscale-keepalive <seconds>', 'with --autoscale: how long after it last grew the pool may shrink', '30')
    .option('--without-control', 'do not answer remote control (fennel inspect / control, celery inspect / control)')
    .option('--actors', "host actors: the app's app.actor() classes are placed here, their calls run in this process (docs/actors.md)")
    .option('-E, --events', 'send task events (received, started, succeeded, failed, …) for monitors such as the dashboard')
    .action((flags: Flags) => guard(() => runWorker(flags)));
}

async function runWorker(flags: Flags): Promise<void> {
  if (!['process', 'thread', 'async'].includes(flags.pool)) fail(`--pool must be process, thread or async (got '${flags.pool}')`);
  const concurrency = flags.concurrency === undefined ? undefined : Number(flags.concurrency);
  if (concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1)) fail(`--concurrency must be a positive integer (got '${flags.concurrency}')`);
  const maxTasksPerChild = flags.maxTasksPerChild === undefined ? undefined : Number(flags.maxTasksPerChild);
  if (maxTasksPerChild !== undefined && (!Number.isInteger(maxTasksPerChild) || maxTasksPerChild < 1)) fail(`--max-tasks-per-child must be a positive integer (got '${flags.maxTasksPerChild}')`);
  const maxMemoryPerChildMb = flags.maxMemoryPerChild === undefined ? undefined : Number(flags.maxMemoryPerChild);
  if (maxMemoryPerChildMb !== undefined && !(maxMemoryPerChildMb > 0)) fail(`--max-memory-per-child must be a positive number of MB (got '${flags.maxMemoryPerChild}')`);
  let autoscale: { max: number; min: number; keepaliveSec: number } | undefined;
  if (flags.autoscale !== undefined) {
    // Celery's form: MAX,MIN, or MAX alone (MIN 0 there; 1 here, as a pool keeps a slot).
    const [max, min] = flags.autoscale.split(',').map((n) => Number(n.trim()));
    const range = { max: max ?? NaN, min: min ?? 1 };
    const keepaliveSec = Number(flags.autoscaleKeepalive ?? 30);
    if (!Number.isInteger(range.max) || !Number.isInteger(range.min) || range.min < 1 || range.min > range.max) fail(`--autoscale must be MAX,MIN: positive integers with MIN ≤ MAX (got '${flags.autoscale}')`);
    if (!(keepaliveSec >= 0)) fail(`--autoscale-keepalive must be a number of seconds (got '${flags.autoscaleKeepalive}')`);
    autoscale = { ...range, keepaliveSec };
  }
  if (flags.logFormat !== undefined && !(LOG_FORMATS as readonly string[]).includes(flags.logFormat)) fail(`--log-format must be ${LOG_FORMATS.join(' or ')} (got '${flags.logFormat}')`);
  // Named as the flag the user gave, before the URL travels on as FENNEL_BROKER_URL.
  if (flags.broker) checkUrl('broker', flags.broker, '--broker');
  const { app, path, keptByModule } = await loadAppWithUrls(flags.app!, { broker: flags.broker, backend: flags.backend });
  const worker = new Worker(app, {
    appPath: path,
    hostname: flags.hostname,
    logFormat: (flags.logFormat as LogFormat | undefined) ?? defaultLogFormat(),
    pool: flags.pool as PoolKind,
    ...(concurrency ? { concurrency } : {}),
    ...(flags.queues ? { queues: flags.queues.split(',').map((q) => q.trim()).filter(Boolean) } : {}),
    ...(flags.broadcastQueues !== undefined ? { broadcastQueues: flags.broadcastQueues.split(',').map((q) => q.trim()).filter(Boolean) } : {}),
    logLevel: flags.loglevel,
    graceSec: Number(flags.grace),
    prefetchMultiplier: Number(flags.prefetchMultiplier),
    taskEvents: flags.events ?? false,
    ...(maxTasksPerChild ? { maxTasksPerChild } : {}),
    ...(maxMemoryPerChildMb ? { maxMemoryPerChildMb } : {}),
    ...(flags.beat ? { beat: true } : {}),
    ...(autoscale ? { autoscale } : {}),
    control: !flags.withoutControl,
    actors: flags.actors === true,
    // A remote shutdown is a warm shutdown, as SIGTERM: the process exits once the worker has stopped.
    onRemoteShutdown: () => onSignal('remote control'),
  });
  let signals = 0;
  // Once a cold shutdown has begun, it decides the exit (130): the warm one it cut short may finish first (the
  // abort ends the running tasks, which drains the worker) and must not exit 0 before it.
  let cold = false;
  const onSignal = (signal: NodeJS.Signals | 'remote control'): void => {
    signals++;
    if (signals === 1) {
      worker.log.info(`${signal}: warm shutdown (press Ctrl-C again to exit at once)`);
      worker.stop().then(
        () => cold || process.exit(0),
        (error: unknown) => {
          if (cold) return;
          worker.log.error({ err: error }, 'error during shutdown');
          process.exit(1);
        },
      );
    } else if (signal === 'SIGINT') {
      cold = true;
      worker.log.warn(`${signal} again: cold shutdown; ${worker.holding} unfinished task(s) will be delivered again`);
      void worker.abort().finally(() => process.exit(130));
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  for (const { setting, url } of keptByModule) {
    worker.log.warn(`${flags.app} sets its ${setting} in code (${maskUrl(url)}): this worker uses ${maskUrl(app.config[setting])} as the command line says, but tasks that send tasks from their code use the module's app, and so ${maskUrl(url)}`);
  }
  await worker.start();
}
