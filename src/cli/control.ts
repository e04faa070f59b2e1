// `fennel inspect <command>` and `fennel control <command>`: Celery's remote control from the command line, through
// app.control. Replies are gathered until every addressed worker has answered or --timeout passes; workers that
// did not answer are named ("no reply from …"). Exit status: 0 when every addressed worker answered (or, with no
// destination, at least one did) and none refused; 1 when a worker answered with an error; 69 (Celery's
// EX_UNAVAILABLE) when an addressed worker did not answer or no worker did. docs/control.md has the commands.

import type { Command } from 'commander';
import type { ControlOutcome } from '../control/client.ts';
import type { ControlOptions } from '../control/control.ts';
import { appFrom, fail, guard, type AppFlags } from './common.ts';

/** Celery's EX_UNAVAILABLE: no node (or not every addressed node) replied. */
const EXIT_NO_REPLY = 69;

interface Flags extends AppFlags {
  destination?: string;
  pattern?: string;
  matcher?: string;
  timeout: string;
  json?: boolean;
}

interface Spec {
  /** Celery's method name. */
  method: string;
  /** The positional arguments, as shown in the help. */
  usage: string;
  /** Builds the request's arguments from the positional words, or fails with the reason. */
  args(words: string[]): Record<string, unknown>;
}

const none = (): Record<string, unknown> => ({});

function count(word: string | undefined, what: string): number {
  const n = Number(word);
  if (word === undefined || !Number.isInteger(n) || n < 1) fail(`${what} must be a positive integer (got '${word ?? ''}')`);
  return n;
}

function secondsArg(word: string | undefined, what: string): number | null {
  if (word === undefined || word === 'none' || word === 'null') return null;
  const n = Number(word);
  if (!Number.isFinite(n) || n < 0) fail(`${what} must be a number of seconds (got '${word}')`);
  return n;
}

function needs(words: string[], n: number, usage: string): void {
  if (words.length < n) fail(`missing argument: ${usage}`);
}

const INSPECT: Record<string, Spec> = {
  ping: { method: 'ping', usage: '', args: none },
  active: { method: 'active', usage: '', args: none },
  reserved: { method: 'reserved', usage: '', args: none },
  scheduled: { method: 'scheduled', usage: '', args: none },
  registered: { method: 'registered', usage: '[attribute…]', args: (words) => ({ taskinfoitems: words }) },
  stats: { method: 'stats', usage: '', args: none },
  revoked: { method: 'revoked', usage: '', args: none },
  'active-queues': { method: 'active_queues', usage: '', args: none },
  'query-task': {
    method: 'query_task',
    usage: 'ID…',
    args: (words) => {
      needs(words, 1, 'query-task ID…');
      return { ids: words };
    },
  },
};

const CONTROL: Record<string, Spec> = {
  shutdown: { method: 'shutdown', usage: '', args: none },
  'pool-grow': { method: 'pool_grow', usage: '[N]', args: ([n]) => ({ n: n === undefined ? 1 : count(n, 'N') }) },
  'pool-shrink': { method: 'pool_shrink', usage: '[N]', args: ([n]) => ({ n: n === undefined ? 1 : count(n, 'N') }) },
  autoscale: {
    method: 'autoscale',
    usage: 'MAX MIN',
    args: (words) => {
      needs(words, 2, 'autoscale MAX MIN');
      const [max, min] = [count(words[0], 'MAX'), count(words[1], 'MIN')];
      if (min > max) fail(`MIN (${min}) is greater than MAX (${max})`);
      return { max, min };
    },
  },
  'rate-limit': {
    method: 'rate_limit',
    usage: 'TASK RATE',
    args: (words) => {
      needs(words, 2, 'rate-limit TASK RATE (e.g. 10/s; 0 removes it)');
      return { task_name: words[0], rate_limit: words[1] };
    },
  },
  'time-limit': {
    method: 'time_limit',
    usage: 'TASK SOFT [HARD]',
    args: (words) => {
      needs(words, 2, 'time-limit TASK SOFT [HARD] (seconds; 0 or none: no limit)');
      return { task_name: words[0], soft: secondsArg(words[1], 'SOFT'), hard: secondsArg(words[2], 'HARD') };
    },
  },
  'add-consumer': {
    method: 'add_consumer',
    usage: 'QUEUE',
    args: (words) => {
      needs(words, 1, 'add-consumer QUEUE');
      return { queue: words[0] };
    },
  },
  'cancel-consumer': {
    method: 'cancel_consumer',
    usage: 'QUEUE',
    args: (words) => {
      needs(words, 1, 'cancel-consumer QUEUE');
      return { queue: words[0] };
    },
  },
  'enable-events': { method: 'enable_events', usage: '', args: none },
  'disable-events': { method: 'disable_events', usage: '', args: none },
  revoke: {
    method: 'revoke',
    usage: 'ID…',
    args: (words) => {
      needs(words, 1, 'revoke ID…');
      return { task_id: words, terminate: false, signal: 'SIGTERM' };
    },
  },
};

export function registerControl(program: Command): void {
  const add = (name: 'inspect' | 'control', specs: Record<string, Spec>, description: string): void => {
    program
      .command(name)
      .description(description)
      .argument('<command>', Object.entries(specs).map(([command, spec]) => (spec.usage ? `${command} ${spec.usage}` : command)).join(' | '))
      .argument('[args...]', "the command's arguments")
      .option('-A, --app <path>', 'tasks module whose app configuration to use')
      .option('-b, --broker <url>', 'broker URL')
      .option('-d, --destination <list>', 'comma-separated node names to address (default: every worker)')
      .option('-p, --pattern <pattern>', 'address the workers whose node name matches (with --matcher)')
      .option('--matcher <kind>', 'glob (default) | pcre', 'glob')
      .option('--timeout <ms>', 'how long to wait for replies', '1000')
      .option('--json', 'print JSON')
      .action((command: string, words: string[], flags: Flags) => guard(() => run(name, specs, command, words, flags)));
  };
  add('inspect', INSPECT, "ask the workers (Fennel's and Celery's) what they are doing");
  add('control', CONTROL, 'change the running workers: shutdown, pool size, limits, consumers, events, revoke');
}

async function run(kind: 'inspect' | 'control', specs: Record<string, Spec>, command: string, words: string[], flags: Flags): Promise<void> {
  const spec = Object.hasOwn(specs, command) ? specs[command] : undefined;
  if (!spec) fail(`unknown ${kind} command '${command}'; one of: ${Object.keys(specs).join(', ')}`);
  const timeoutMs = Number(flags.timeout);
  if (!(timeoutMs > 0)) fail(`--timeout must be a positive number of milliseconds (got '${flags.timeout}')`);
  if (flags.matcher !== 'glob' && flags.matcher !== 'pcre') fail(`--matcher must be glob or pcre (got '${flags.matcher}')`);
  const destination = flags.destination?.split(',').map((d) => d.trim()).filter(Boolean);
  const options: ControlOptions = {
    timeoutMs,
    ...(destination?.length ? { destination } : {}),
    ...(flags.pattern ? { pattern: flags.pattern, matcher: flags.matcher } : {}),
  };
  const args = spec.args(words);
  const app = await appFrom(flags);
  let outcome: ControlOutcome;
  try {
    outcome = await app.control.broadcast(spec.method, args, options);
  } finally {
    await app.close();
  }
  print(kind, outcome, flags.json ?? false);
  const failed = outcome.replies.some(({ result }) => isError(result));
  process.exitCode = outcome.missing.length > 0 || outcome.replies.length === 0 ? EXIT_NO_REPLY : failed ? 1 : 0;
}

function isError(result: unknown): result is { error: string } {
  return result !== null && typeof result === 'object' && typeof (result as { error?: unknown }).error === 'string';
}

/** Celery's output: `inspect --json` one object by node, `control --json` the list of replies; text `-> node: OK`. */
function print(kind: 'inspect' | 'control', outcome: ControlOutcome, json: boolean): void {
  const { replies, missing } = outcome;
  if (json) {
    const body = kind === 'inspect' ? Object.fromEntries(replies.map(({ node, result }) => [node, result])) : replies.map(({ node, result }) => ({ [node]: result }));
    process.stdout.write(`${JSON.stringify(body)}\n`);
  } else {
    const lines: string[] = [];
    for (const { node, result } of replies) {
      lines.push(`-> ${node}: ${isError(result) ? 'ERROR' : 'OK'}`);
      lines.push(...describe(result).map((line) => `    ${line}`));
    }
    if (replies.length > 0) lines.push('', `${replies.length} ${replies.length === 1 ? 'node' : 'nodes'} replied.`);
    process.stdout.write(lines.length ? `${lines.join('\n')}\n` : '');
  }
  for (const node of missing) process.stderr.write(`no reply from ${node}\n`);
  if (replies.length === 0) process.stderr.write('Error: No nodes replied within time constraint\n');
}

/** A result in a few readable lines: `{ok}` and `{error}` as their text, lists one item per line. */
function describe(result: unknown): string[] {
  if (result !== null && typeof result === 'object' && !Array.isArray(result)) {
    const r = result as { ok?: unknown; error?: unknown };
    if (typeof r.ok === 'string' && Object.keys(r).length === 1) return [r.ok];
    if (typeof r.error === 'string') return [r.error];
  }
  if (Array.isArray(result)) return result.length === 0 ? ['- empty -'] : result.map((item) => `* ${typeof item === 'string' ? item : JSON.stringify(item)}`);
  return JSON.stringify(result, null, 2).split('\n');
}
