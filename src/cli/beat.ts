// `fennel beat --app ./tasks.ts`: fires the app's schedules (Celery's `celery beat`). Any number may run: one
// leads, the others wait to take over (src/beat/beat.ts). `fennel schedules` lists them with their last and
// next fires and the leader. SIGTERM or SIGINT: stop firing, give the lease up (a follower takes over at once),
// exit 0. docs/beat.md.

import type { Command } from 'commander';
import { Beat, DEFAULT_LEASE_MS } from '../beat/beat.ts';
import { beatStatus } from '../beat/status.ts';
import { checkUrl } from '../app/config.ts';
import { loadAppWithUrls } from '../worker/load-app-with-urls.ts';
import { defaultLogFormat, LOG_FORMATS, type LogFormat } from '../worker/log.ts';
import { maskUrl } from '../util/url.ts';
import { appFrom, fail, guard, type AppFlags } from './common.ts';

interface BeatFlags extends AppFlags {
  name?: string;
  leaseSec: string;
  loglevel: string;
  logFormat?: string;
}

export function registerBeat(program: Command): void {
  program
    .command('beat')
    .description("fire the app's schedules (app.schedule); any number may run, one leads")
    .requiredOption('-A, --app <path>', 'tasks module that exports a Fennel app')
    .option('-b, --broker <url>', "broker URL (default: the app's)")
    .option('--backend <url>', "result backend URL, where the lease and the last fires are kept (default: the app's)")
    .option('-n, --name <name>', 'this beat\'s name in the lease and logs (default: beat.<pid>@<hostname>)')
    .option('--lease-sec <seconds>', 'how long the lead lasts unrenewed: a follower takes over within this after the leader dies', String(DEFAULT_LEASE_MS / 1000))
    .option('-l, --loglevel <level>', 'trace | debug | info | warn | error', 'info')
    .option('--log-format <format>', 'pretty | json (default: pretty on a terminal, else json)')
    .action((flags: BeatFlags) => guard(() => runBeat(flags)));

  program
    .command('schedules')
    .description('list the schedules with their last and next fires, and which beat leads')
    .requiredOption('-A, --app <path>', 'tasks module that exports a Fennel app')
    .option('-b, --broker <url>', 'broker URL')
    .option('--backend <url>', 'result backend URL')
    .option('--json', 'print JSON')
    .action((flags: AppFlags & { json?: boolean }) => guard(() => listSchedules(flags)));
}

async function runBeat(flags: BeatFlags): Promise<void> {
  const leaseSec = Number(flags.leaseSec);
  if (!(leaseSec >= 0.1)) fail(`--lease-sec must be a number of seconds, at least 0.1 (got '${flags.leaseSec}')`);
  if (flags.logFormat !== undefined && !(LOG_FORMATS as readonly string[]).includes(flags.logFormat)) fail(`--log-format must be ${LOG_FORMATS.join(' or ')} (got '${flags.logFormat}')`);
  if (flags.broker) checkUrl('broker', flags.broker, '--broker');
  if (flags.backend) checkUrl('backend', flags.backend, '--backend');
  const { app, keptByModule } = await loadAppWithUrls(flags.app!, { broker: flags.broker, backend: flags.backend });
  const beat = new Beat(app, {
    ...(flags.name ? { name: flags.name } : {}),
    leaseMs: leaseSec * 1000,
    logLevel: flags.loglevel,
    logFormat: (flags.logFormat as LogFormat | undefined) ?? defaultLogFormat(),
  });
  for (const { setting, url } of keptByModule) beat.log.warn(`${flags.app} sets its ${setting} in code (${maskUrl(url)}): this beat uses ${maskUrl(app.config[setting])} as the command line says`);
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    beat.log.info(`${signal}: beat stopping`);
    beat.stop().then(
      () => app.close().finally(() => process.exit(0)),
      (error: unknown) => {
        beat.log.error({ err: error }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Engines unref their timers (a producer must be able to exit); a beat must not.
  setInterval(() => {}, 1 << 30);
  await beat.start();
}

async function listSchedules(flags: AppFlags & { json?: boolean }): Promise<void> {
  const app = await appFrom(flags);
  const status = await beatStatus(app);
  if (flags.json) process.stdout.write(`${JSON.stringify(status)}\n`);
  else {
    const lines = [status.leader ? `leader: ${status.leader.beat} (lease until ${status.leader.leaseUntil})` : 'leader: none (no beat is running)', ''];
    const rows = [['name', 'when', 'task', 'catch-up', 'last fire', 'next fire'], ...status.schedules.map((s) => [s.name, s.when, s.task, s.catchUp, s.lastDue ?? 'never', s.next ?? 'never'])];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const row of rows) lines.push(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
    if (status.schedules.length === 0) lines.push('(the app registers no schedules)');
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  await app.close();
}
