// App configuration: one table of options (name, environment variable, default, meaning), validated once at
// construction. Precedence: constructor option, then environment, then default. An unknown option is an
// error with a suggestion. docs/config.md is generated from OPTIONS (npm run docs:config).
// The broker and backend URLs are checked here too, part by part, by the parsers their engines use
// (transports/index.ts, backends/index.ts): a bad URL fails at `new Fennel()`, naming the setting it came from,
// not at the first send, and never as another setting's error.

import { z } from 'zod';
import { checkBackendUrl } from '../backends/index.ts';
import { tierUrls } from '../cache/cache.ts';
import { checkCacheUrl } from '../cache/engines.ts';
import { ConfigError } from '../errors.ts';
import { checkBrokerUrl } from '../transports/index.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import { maskUrl } from '../util/url.ts';
import { suggest } from './suggest.ts';

const routeSchema = z.object({ queue: z.string().min(1), priority: z.number().int().min(0).max(255).optional() }).strict();
export type Route = z.infer<typeof routeSchema>;

// Only the type here; every part is checked by the engine's parser (checkUrl below).
const url = z.string();

/** Every option: its schema, environment variable (if any), default and one line of documentation. */
export const OPTIONS = {
  broker: { schema: url, env: 'FENNEL_BROKER_URL', default: 'sqlite://fennel.db', doc: 'Broker URL: sqlite://path (one machine), redis://host:port/db or amqp://host/vhost (many machines; Celery-compatible), nats://host:4222,host2:4222 (JetStream, replicated with ?replicas=3), memory:// (one process only).' },
  backend: { schema: url, env: 'FENNEL_RESULT_BACKEND', default: undefined, doc: 'Result backend URL. Defaults to the broker URL.' },
  cache: {
    schema: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    env: 'FENNEL_CACHE_URL',
    default: 'lru://',
    doc: "The app's cache (app.cache, memoized tasks; docs/cache.md): lru://?max=10000 (this process only), redis://host:6379/0 or memcached://host1:11211,host2:11211 (sharded). Tiers, hottest first: an array, or URLs separated by spaces in the environment.",
  },
  connectTimeoutMs: {
    schema: z.number().int().positive(),
    env: 'FENNEL_CONNECT_TIMEOUT_MS',
    default: DEFAULT_CONNECT_TIMEOUT_MS,
    doc: 'How long a connection attempt to the broker or result backend may take, and how long a call waits for one that is down (SQLite: for another process\'s lock), before it fails with BrokerUnavailableError: delay() and result.sent, get(), revoke(), the CLI. Workers keep reconnecting with backoff, logging it.',
  },
  defaultQueue: { schema: z.string().min(1), env: 'FENNEL_DEFAULT_QUEUE', default: 'celery', doc: 'Queue for tasks with no route and no per-call queue (Celery\'s default name).' },
  broadcastQueue: { schema: z.string().min(1), env: 'FENNEL_BROADCAST_QUEUE', default: 'fennel.broadcast', doc: "Broadcast queue for broadcast calls with no queue of their own; every worker receives a copy of each message sent to it (Celery's Broadcast)." },
  beatGroup: {
    schema: z.string().min(1),
    env: 'FENNEL_BEAT_GROUP',
    default: 'default',
    doc: "The beats of this app: they share one leader lease and one record of last fires, kept in the result backend. Apps on one broker with different schedules need different groups (RedBeat's key prefix).",
  },
  routes: { schema: z.record(z.string(), routeSchema), env: undefined, default: {}, doc: "Task name pattern → { queue, priority }. '*' matches any run of characters; the first match wins; a per-call queue wins over all." },
  visibilityTimeoutSec: { schema: z.number().positive(), env: 'FENNEL_VISIBILITY_TIMEOUT_SEC', default: 30, doc: 'A message held by a worker that died becomes visible again after this many seconds. Live workers renew their leases, so long tasks are safe.' },
  maxPayloadBytes: { schema: z.number().int().positive(), env: 'FENNEL_MAX_PAYLOAD_BYTES', default: 10 * 1024 * 1024, doc: 'Calls whose encoded arguments are larger are refused with PayloadTooLargeError.' },
  resultExpiresSec: { schema: z.number().min(0), env: 'FENNEL_RESULT_EXPIRES_SEC', default: 86_400, doc: 'Stored results are deleted after this many seconds (0: never), as Celery\'s result_expires.' },
  pollIntervalMs: { schema: z.number().int().positive(), env: 'FENNEL_POLL_INTERVAL_MS', default: 250, doc: 'How often an idle consumer looks for work it was not woken for (SQLite: without a file-change notification; Redis: messages from Python producers, which send no wake-up), and SQLite result waiters poll.' },
  trackStarted: { schema: z.boolean(), env: 'FENNEL_TRACK_STARTED', default: true, doc: 'Store state STARTED (with pid and hostname) while a task runs (once it has run 5 ms: a task that ends sooner goes straight to its outcome).' },
  poisonAfterCrashes: { schema: z.number().int().min(1), env: 'FENNEL_POISON_AFTER_CRASHES', default: 3, doc: 'A message whose task has crashed its pool slot this many times goes to the dead letters (FAILURE WorkerLostError) instead of being retried again.' },
  revokeExpiresSec: { schema: z.number().positive(), env: 'FENNEL_REVOKE_EXPIRES_SEC', default: 10_800, doc: 'How long workers keep honouring a revocation (Celery keeps revoked ids 3 hours): a revoked task received after this runs.' },
  signingKey: {
    schema: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    env: 'FENNEL_SIGNING_KEY',
    default: undefined,
    doc: 'HMAC-SHA256 key(s) for signed messages (docs/security.md): every task message is signed with the first, and workers refuse (dead-letter) any message not signed with one of them. Several keys for rotation: an array, or separated by commas in the environment. At least 16 characters each.',
  },
  maxRetries: { schema: z.number().int().min(0), env: 'FENNEL_MAX_RETRIES', default: 3, doc: 'Default for tasks: how many times a task is retried (by ctx.retry() or after its pool slot died) before it fails.' },
} as const;

type Options = typeof OPTIONS;
export type FennelOptions = { [K in keyof Options]?: z.input<Options[K]['schema']> };
export type ResolvedConfig = { [K in keyof Options]: z.output<Options[K]['schema']> } & { backend: string };

/** Where a value came from, for messages: the option, the environment variable or the default. */
function sourceOf(name: keyof Options, given: unknown, envRaw: string | undefined): string {
  const spec = OPTIONS[name];
  if (given !== undefined) return `option '${name}'`;
  if (envRaw !== undefined && envRaw !== '') return `environment variable ${spec.env}`;
  return `default of '${name}'`;
}

/**
 * Checks a broker or backend URL with its engine's parser; a problem is a ConfigError that names the setting
 * (`source`: option 'broker', environment variable FENNEL_BROKER_URL, --broker …), then what is wrong.
 * `broker` is the app's broker URL, which an rpc:// backend needs to be amqp://.
 */
export function checkUrl(name: 'broker' | 'backend', value: string, source: string, broker?: string): void {
  try {
    if (name === 'broker') checkBrokerUrl(value);
    else checkBackendUrl(value, broker);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(`${source} is invalid: ${error.message}`, { cause: error });
  }
}

function fromEnv(name: keyof Options, raw: string): unknown {
  const schema = OPTIONS[name].schema as z.ZodType;
  // Numbers and booleans arrive as text; anything else is taken as it is.
  if (schema instanceof z.ZodNumber) return Number(raw);
  if (schema instanceof z.ZodBoolean) return raw === 'true' || raw === '1';
  return raw;
}

export function resolveConfig(options: FennelOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  const names = Object.keys(OPTIONS) as Array<keyof Options>;
  for (const key of Object.keys(options)) {
    if (!(names as string[]).includes(key)) {
      const hint = suggest(key, names);
      throw new ConfigError(`unknown option '${key}'${hint ? ` — did you mean '${hint}'?` : ''}; see docs/config.md`);
    }
  }
  const out: Record<string, unknown> = {};
  const sources: Partial<Record<keyof Options, string>> = {};
  for (const name of names) {
    const spec = OPTIONS[name];
    const given = (options as Record<string, unknown>)[name];
    const envRaw = spec.env ? env[spec.env] : undefined;
    const value = given !== undefined ? given : envRaw !== undefined && envRaw !== '' ? fromEnv(name, envRaw) : spec.default;
    if (value === undefined) continue;
    const source = (sources[name] = sourceOf(name, given, envRaw));
    const parsed = (spec.schema as z.ZodType).safeParse(value);
    if (!parsed.success) {
      const shown = spec.schema === url && typeof value === 'string' ? maskUrl(value) : value;
      throw new ConfigError(`${source} is invalid: ${parsed.error.issues.map((i) => i.message).join('; ')} (got ${JSON.stringify(shown)})`);
    }
    out[name] = parsed.data;
  }
  const broker = out['broker'] as string;
  checkUrl('broker', broker, sources.broker!);
  // A backend left unset is the broker's URL, checked as a result backend too (every broker scheme is one).
  if (out['backend'] === undefined) out['backend'] = broker;
  else checkUrl('backend', out['backend'] as string, sources.backend!, broker);
  try {
    for (const tier of tierUrls(out['cache'] as string | string[])) checkCacheUrl(tier);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(`${sources.cache!} is invalid: ${error.message}`, { cause: error });
  }
  return out as ResolvedConfig;
}

/** Compiles the route table: patterns with `*` wildcards, tried in order. */
export function compileRoutes(routes: Record<string, Route>): (taskName: string) => Route | undefined {
  const compiled = Object.entries(routes).map(([pattern, route]) => {
    const regex = new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    return { regex, route };
  });
  return (taskName) => compiled.find((c) => c.regex.test(taskName))?.route;
}
