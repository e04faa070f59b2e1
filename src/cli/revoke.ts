// `fennel revoke ID... [--terminate]`: no worker runs these tasks from now on; --terminate stops running ones.

import type { Command } from 'commander';
import { appFrom, guard, type AppFlags } from './common.ts';

interface Flags extends AppFlags {
  terminate?: boolean;
}

export function registerRevoke(program: Command): void {
  program
    .command('revoke')
    .description('revoke tasks by id: workers that receive them do not run them; --terminate also stops a running one')
    .argument('<ids...>', 'task ids')
    .option('-A, --app <path>', 'tasks module whose app configuration to use')
    .option('-b, --broker <url>', 'broker URL')
    .option('--terminate', 'stop the task if it is running now (its pool slot is killed)')
    .action((ids: string[], flags: Flags) => guard(() => revoke(ids, flags)));
}

async function revoke(ids: string[], flags: Flags): Promise<void> {
  const app = await appFrom(flags);
  try {
    for (const id of ids) {
      await app.revoke(id, { terminate: flags.terminate ?? false });
      process.stdout.write(`revoked ${id}${flags.terminate ? ' (terminate)' : ''}\n`);
    }
  } finally {
    await app.close();
  }
}
