// `fennel call math.add 2 3 [--wait]`: send a task by name from the command line.

import type { Command } from 'commander';
import { noConsumerHint } from '../transports/presence.ts';
import { appFrom, guard, parseArg, type AppFlags } from './common.ts';

interface Flags extends AppFlags {
  wait?: boolean;
  timeout: string;
  queue?: string;
  countdown?: string;
}

export function registerCall(program: Command): void {
  program
    .command('call <task> [args...]')
    .description('send a task by name; each argument is JSON if it parses, else a string')
    .option('-A, --app <path>', 'tasks module whose app configuration to use')
    .option('-b, --broker <url>', 'broker URL (default: $FENNEL_BROKER_URL or sqlite://fennel.db)')
    .option('--backend <url>', 'result backend URL (default: the broker)')
    .option('-Q, --queue <name>', 'queue to send to')
    .option('--countdown <seconds>', 'run no sooner than this many seconds from now')
    .option('-w, --wait', 'wait for the result and print it')
    .option('--timeout <ms>', 'with --wait, give up after this long', '30000')
    .action((task: string, args: string[], flags: Flags) => guard(() => call(task, args, flags)));
}

async function call(task: string, args: string[], flags: Flags): Promise<void> {
  const app = await appFrom(flags);
  const result = app.sendTask(task, args.map(parseArg), {
    ...(flags.queue ? { queue: flags.queue } : {}),
    ...(flags.countdown ? { countdown: Number(flags.countdown) } : {}),
  });
  await result.sent;
  // A task sent to a queue no worker consumes waits for ever, silently: say so at once (a warning only: a worker
  // may start later, and Python Celery workers on Redis cannot be seen). The exit status does not change.
  const hint = result.queue === undefined ? undefined : await noConsumerHint(app.transport, result.queue, undefined, [app.config.broadcastQueue]);
  if (hint) process.stderr.write(`fennel: warning: ${hint}\n`);
  if (!flags.wait) {
    process.stdout.write(`${result.id}\n`);
  } else {
    try {
      const value = await result.get({ timeoutMs: Number(flags.timeout) });
      process.stdout.write(`${JSON.stringify(value)}\n`);
    } catch (error) {
      process.stderr.write(`fennel: ${(error as Error).message}\n`);
      await app.close();
      process.exit(1);
    }
  }
  await app.close();
}
