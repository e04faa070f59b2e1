// App configuration: one table of options (name, environment variable, default, meaning), validated once at
// construction. Precedence: constructor option, then environment, then default. An unknown option is an
// error with a suggestion. docs/config.md is generated from OPTIONS (npm run docs:config).

import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { suggest } from './suggest.ts';

const routeSchema = z.object({ queue: z.string().min(1), priority: z.number().int().min(0).max(255).optional() }).strict();
export type Route = z.infer<typeof routeSchema>;

const url = z.string().regex(/^[a-z][a-z0-9+.-]*:\/\//i, 'must be a URL such as sqlite://fennel.db or redis://127.0.0.1:6379/0');

/** Every option: its schema, environment variable (if any), default and one line of documentation. */
export const OPTIONS = {
  broker: { schema: url, env: 'FENNEL_BROKER_URL', default: 'sqlite://fennel.db', doc: 'Broker URL: sqlite://path (one machine), redis://host:port/db (many machines; Celery-compatible), memory:// (one process only).' },
  backend: { schema: url, env: 'FENNEL_RESULT_BACKEND', default: undefined, doc: 'Result backend URL. Defaults to the broker URL.' },
  defaultQueue: { schema: z.string().min(1), env: 'FENNEL_DEFAULT_QUEUE', default: 'celery', doc: 'Queue for tasks with no route and no per-call queue (Celery\'s default name).' },
  routes: { schema: z.record(z.string(), routeSchema), env: undefined, default: {}, doc: "Task name pattern → { queue, priority }. '*' matches any run of characters; the first match wins; a per-call queue wins over all." },
  visibilityTimeoutSec: { schema: z.number().positive(), env: 'FENNEL_VISIBILITY_TIMEOUT_SEC', default: 30, doc: 'A message held by a worker that died becomes visible again after this many seconds. Live workers renew their leases, so long tasks are safe.' },
  maxPayloadBytes: { schema: z.number().int().positive(), env: 'FENNEL_MAX_PAYLOAD_BYTES', default: 10 * 1024 * 1024, doc: 'Calls whose encoded arguments are larger are refused with PayloadTooLargeError.' },
  resultExpiresSec: { schema: z.number().min(0), env: 'FENNEL_RESULT_EXPIRES_SEC', default: 86_400, doc: 'Stored results are deleted after this many seconds (0: never), as Celery\'s result_expires.' },
  pollIntervalMs: { schema: z.number().int().positive(), env: 'FENNEL_POLL_INTERVAL_MS', default: 250, doc: 'How often an idle consumer looks for work it was not woken for (SQLite: without a file-change notification; Redis: messages from Python producers, which send no wake-up), and SQLite result waiters poll.' },
  trackStarted: { schema: z.boolean(), env: 'FENNEL_TRACK_STARTED', default: true, doc: 'Store state STARTED (with pid and hostname) while a task runs (from one event-loop turn after it begins: a task that ends sooner goes straight to its outcome).' },
  poisonAfterCrashes: { schema: z.number().int().min(1), env: 'FENNEL_POISON_AFTER_CRASHES', default: 3, doc: 'A message whose task has crashed its pool slot this many times goes to the dead letters (FAILURE WorkerLostError) instead of being retried again.' },
  revokeExpiresSec: { schema: z.number().positive(), env: 'FENNEL_REVOKE_EXPIRES_SEC', default: 10_800, doc: 'How long workers keep honouring a revocation (Celery keeps revoked ids 3 hours): a revoked task received after this runs.' },
  maxRetries: { schema: z.number().int().min(0), env: 'FENNEL_MAX_RETRIES', default: 3, doc: 'Default for tasks: how many times a task is retried (by ctx.retry() or after its pool slot died) before it fails.' },
} as const;

type Options = typeof OPTIONS;
export type FennelOptions = { [K in keyof Options]?: z.input<Options[K]['schema']> };
export type ResolvedConfig = { [K in keyof Options]: z.output<Options[K]['schema']> } & { backend: string };

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
  for (const name of names) {
    const spec = OPTIONS[name];
    const given = (options as Record<string, unknown>)[name];
    const envRaw = spec.env ? env[spec.env] : undefined;
    const value = given !== undefined ? given : envRaw !== undefined && envRaw !== '' ? fromEnv(name, envRaw) : spec.default;
    if (value === undefined) continue;
    const parsed = (spec.schema as z.ZodType).safeParse(value);
    if (!parsed.success) {
      const source = given !== undefined ? `option '${name}'` : envRaw !== undefined ? `environment variable ${spec.env}` : `default of '${name}'`;
      throw new ConfigError(`${source} is invalid: ${parsed.error.issues.map((i) => i.message).join('; ')} (got ${JSON.stringify(value)})`);
    }
    out[name] = parsed.data;
  }
  out['backend'] ??= out['broker'];
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
