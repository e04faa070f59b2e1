// `fennel status`: queue depths, stored tasks by state, dead letters.

import type { Command } from 'commander';
import { appFrom, guard, type AppFlags } from './common.ts';
import { maskUrl } from '../util/url.ts';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show queue depths, tasks by state and dead letters')
    .option('-A, --app <path>', 'tasks module whose app configuration to use')
    .option('-b, --broker <url>', 'broker URL')
    .option('--backend <url>', 'result backend URL')
    .option('--json', 'print JSON')
    .action((flags: AppFlags & { json?: boolean }) => guard(() => status(flags)));
}

async function status(flags: AppFlags & { json?: boolean }): Promise<void> {
  const app = await appFrom(flags);
  const [queues, states, dead] = await Promise.all([app.transport.stats(), app.backend.countByState(), app.transport.listDeadLetters({ limit: 10_000 })]);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ broker: maskUrl(app.config.broker), queues, states, deadLetters: dead.length })}\n`);
  } else {
    const lines = [`broker ${maskUrl(app.config.broker)}`, '', 'queue                     ready  scheduled    unacked'];
    for (const q of queues) lines.push(`${q.queue.padEnd(22)} ${String(q.ready).padStart(8)} ${String(q.scheduled).padStart(10)} ${String(q.unacked).padStart(10)}`);
    if (queues.length === 0) lines.push('(no messages)');
    lines.push('', 'tasks by state');
    for (const [state, n] of Object.entries(states)) lines.push(`  ${state.padEnd(10)} ${n}`);
    if (Object.keys(states).length === 0) lines.push('  (no results stored)');
    lines.push('', `dead letters: ${dead.length}${dead.length ? ' (fennel dead-letters to list them)' : ''}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  await app.close();
}
