// `fennel purge [-Q q1,q2] [-f]`: delete the messages waiting in queues. Asks first unless -f.

import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { appFrom, fail, guard, type AppFlags } from './common.ts';
import { maskUrl } from '../util/url.ts';

interface Flags extends AppFlags {
  queues?: string;
  force?: boolean;
}

export function registerPurge(program: Command): void {
  program
    .command('purge')
    .description('delete all waiting messages from queues (messages being run are not touched)')
    .option('-A, --app <path>', 'tasks module whose app configuration to use')
    .option('-b, --broker <url>', 'broker URL')
    .option('-Q, --queues <list>', "comma-separated queues (default: the app's default queue)")
    .option('-f, --force', 'do not ask for confirmation')
    .action((flags: Flags) => guard(() => purge(flags)));
}

async function purge(flags: Flags): Promise<void> {
  const app = await appFrom(flags);
  const queues = flags.queues ? flags.queues.split(',').map((q) => q.trim()).filter(Boolean) : [app.config.defaultQueue];
  const counts = await Promise.all(queues.map(async (q) => [q, await app.transport.depth(q)] as const));
  const total = counts.reduce((sum, [, n]) => sum + n, 0);
  if (!flags.force) {
    if (!process.stdin.isTTY) fail('purge asks for confirmation; pass -f to purge without asking');
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    const answer = await rl.question(`Delete ${total} message(s) from ${queues.join(', ')} on ${maskUrl(app.config.broker)}? [y/N] `);
    rl.close();
    if (!/^y(es)?$/i.test(answer.trim())) {
      process.stdout.write('nothing purged\n');
      await app.close();
      return;
    }
  }
  for (const queue of queues) {
    const n = await app.transport.purge(queue);
    process.stdout.write(`purged ${n} message(s) from ${queue}\n`);
  }
  await app.close();
}
