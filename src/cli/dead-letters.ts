// `fennel dead-letters [--requeue ID|all]`: list messages that could not be run, or send them again.

import type { Command } from 'commander';
import { appFrom, fail, guard, type AppFlags } from './common.ts';

interface Flags extends AppFlags {
  requeue?: string;
  limit: string;
  json?: boolean;
}

export function registerDeadLetters(program: Command): void {
  program
    .command('dead-letters')
    .description('list dead letters (malformed messages, unknown tasks, rejected tasks), or requeue them')
    .option('-A, --app <path>', 'tasks module whose app configuration to use')
    .option('-b, --broker <url>', 'broker URL')
    .option('--requeue <id>', "send dead letter <id> (or 'all') to its queue again")
    .option('--limit <n>', 'list at most this many', '100')
    .option('--json', 'print JSON')
    .action((flags: Flags) => guard(() => deadLetters(flags)));
}

async function deadLetters(flags: Flags): Promise<void> {
  const app = await appFrom(flags);
  if (flags.requeue) {
    const ids = flags.requeue === 'all' ? (await app.transport.listDeadLetters({ limit: 1_000_000 })).map((d) => d.id) : [flags.requeue];
    for (const id of ids) {
      if (!(await app.transport.requeueDeadLetter(id))) {
        await app.close();
        fail(`no dead letter with id ${id}`);
      }
      process.stdout.write(`requeued dead letter ${id}\n`);
    }
    await app.close();
    return;
  }
  const letters = await app.transport.listDeadLetters({ limit: Number(flags.limit) });
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(letters.map(({ message: _m, ...rest }) => rest))}\n`);
  } else if (letters.length === 0) {
    process.stdout.write('no dead letters\n');
  } else {
    for (const d of letters) {
      process.stdout.write(`${d.id}\t${d.createdAt.toISOString()}\t${d.queue}\t${d.taskName ?? '?'}[${d.taskId ?? '?'}]\t${d.reason}\n`);
    }
  }
  await app.close();
}
