// `fennel names list [--prefix P] [--meta k=v …] [--json]`: the name server's actors (docs/actors.md), with their
// class, mode, host and whether a live host runs them now; and the live actor hosts.

import type { Command } from 'commander';
import { appFrom, fail, guard, type AppFlags } from './common.ts';

interface Flags extends AppFlags {
  prefix?: string;
  meta?: string[];
  json?: boolean;
}

export function registerNames(program: Command): void {
  const names = program.command('names').description('the actor name server: actors by name, where each lives, and the live hosts');
  names
    .command('list')
    .description('list actors (name, class, mode, host, available, restarts, metadata) and the live actor hosts')
    .option('-A, --app <path>', 'tasks module whose app configuration to use')
    .option('-b, --broker <url>', 'broker URL')
    .option('--backend <url>', 'result backend URL (where the name server lives)')
    .option('--prefix <text>', 'only names starting with this')
    .option('--meta <key=value...>', 'only actors whose metadata has every pair given')
    .option('--json', 'one JSON document: { actors, hosts }')
    .action((flags: Flags) => guard(() => list(flags)));
}

function parseMeta(pairs: readonly string[] = []): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) fail(`--meta takes key=value pairs (got '${pair}')`);
    meta[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return meta;
}

async function list(flags: Flags): Promise<void> {
  const app = await appFrom(flags);
  try {
    const [actors, hosts] = await Promise.all([app.names.list({ ...(flags.prefix !== undefined ? { prefix: flags.prefix } : {}), meta: parseMeta(flags.meta) }), app.names.hosts()]);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ actors, hosts })}\n`);
      return;
    }
    if (actors.length === 0) process.stdout.write('no actors\n');
    for (const a of actors) {
      const meta = Object.entries(a.meta).map(([k, v]) => `${k}=${v}`).join(',');
      const state = a.state === 'dead' ? 'dead' : a.available ? 'available' : 'unavailable';
      process.stdout.write(`${a.name}\t${a.className}\t${a.mode}\t${a.host}\t${state}\trestarts=${a.restarts}${meta ? `\t${meta}` : ''}\n`);
    }
    process.stdout.write(`${hosts.length} live actor host(s)${hosts.length ? `: ${hosts.map((h) => `${h.node} (${h.actors} actor(s), ${h.calls} call(s))`).join(', ')}` : ''}\n`);
  } finally {
    await app.close();
  }
}
