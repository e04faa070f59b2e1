// Remote control over HTTP (POST /api/control/:command): Celery's inspect and control commands, sent through
// app.control to the workers on the gateway's broker, answered with every reply by node and the addressed nodes
// that did not answer. A command is named as the CLI names it (pool-grow) or as Celery does (pool_grow); its
// arguments are Celery's and are checked here, so a request of the wrong shape is a 400 that never reaches a
// worker. The commands that change workers need a configured token: an open gateway runs the inspections only.

import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { parseRateLimit } from '../../app/options.ts';
import type { Fennel } from '../../index.ts';
import { reasons } from '../arguments.ts';
import { HttpError } from '../http-errors.ts';

interface CommandSpec {
  /** Celery's method name: what the worker answers to. */
  method: string;
  /** An inspection: it changes nothing, so it runs on a gateway without a token, as the rest of the API does. */
  readOnly: boolean;
  /** Celery's argument names and what each must be; the output is what is sent. */
  args: z.ZodObject;
}

const none = z.strictObject({});

const count = (what: string): z.ZodNumber => {
  const error = `${what} must be a positive integer`;
  return z.number({ error }).int({ error }).min(1, { error });
};

const nonEmpty = (what: string): z.ZodString => z.string({ error: `${what} must be a non-empty string` }).min(1, { error: `${what} must be a non-empty string` });

/** A list of ids, or one id (sent as a list of one). */
const ids = (what: string): z.ZodType<string[]> =>
  z.union([nonEmpty(what).transform((id) => [id]), z.array(nonEmpty(what), { error: `${what} must be a task id or a list of them` }).min(1, { error: `${what} must list at least one task id` })], { error: `${what} must be a task id or a list of them` });

/** Seconds, or null (0 or null: no limit, as the worker reads it). */
const seconds = (what: string): z.ZodType<number | null> => {
  const error = `${what} must be a number of seconds or null`;
  return z.union([z.number({ error }).nonnegative({ error }).finite({ error }), z.null()], { error });
};

/** Celery's rate syntax, as the worker parses it ('10/s', '100/m', '1/h', a bare number per second); 0, '' or null removes the limit. */
function isRate(value: string | number | null): boolean {
  return value === null || value === '' || value === 0 || value === '0' || parseRateLimit(String(value)) !== undefined;
}
const RATE_ERROR = "rate_limit must be a rate such as '10/s', '100/m' or '1/h' (0, '' or null removes the limit)";
const rate = z.union([z.string(), z.number(), z.null()], { error: RATE_ERROR }).refine(isRate, { error: RATE_ERROR });

const inspection = (method: string, args: z.ZodObject = none): CommandSpec => ({ method, readOnly: true, args });
const command = (method: string, args: z.ZodObject = none): CommandSpec => ({ method, readOnly: false, args });

/** The commands by their CLI names (src/cli/control.ts), each with Celery's arguments (src/worker/control.ts). */
const SPECS: Record<string, CommandSpec> = {
  ping: inspection('ping'),
  active: inspection('active', z.strictObject({ safe: z.boolean({ error: 'safe must be true or false' }).nullable().default(null) })),
  reserved: inspection('reserved'),
  scheduled: inspection('scheduled'),
  registered: inspection('registered', z.strictObject({ taskinfoitems: z.array(nonEmpty('each of taskinfoitems'), { error: 'taskinfoitems must be a list of attribute names' }).default([]) })),
  stats: inspection('stats'),
  revoked: inspection('revoked'),
  'active-queues': inspection('active_queues'),
  'query-task': inspection('query_task', z.strictObject({ ids: ids('ids') })),

  shutdown: command('shutdown'),
  'pool-grow': command('pool_grow', z.strictObject({ n: count('n').default(1) })),
  'pool-shrink': command('pool_shrink', z.strictObject({ n: count('n').default(1) })),
  autoscale: command(
    'autoscale',
    z.strictObject({ max: count('max'), min: count('min') }).superRefine((a, ctx) => {
      if (a.min > a.max) ctx.addIssue({ code: 'custom', message: `min (${a.min}) is greater than max (${a.max})`, path: ['min'] });
    }),
  ),
  'rate-limit': command('rate_limit', z.strictObject({ task_name: nonEmpty('task_name'), rate_limit: rate })),
  'time-limit': command(
    'time_limit',
    z.strictObject({ task_name: nonEmpty('task_name'), soft: seconds('soft'), hard: seconds('hard').default(null) }).superRefine((a, ctx) => {
      if (a.soft && a.hard && a.soft > a.hard) ctx.addIssue({ code: 'custom', message: `the soft limit (${a.soft} s) is longer than the hard one (${a.hard} s)`, path: ['soft'] });
    }),
  ),
  'add-consumer': command(
    'add_consumer',
    // Celery's arguments; a Fennel worker reads the queue only, and the rest go on as Celery's client sends them.
    z.strictObject({ queue: nonEmpty('queue'), exchange: z.string().nullable().default(null), exchange_type: z.string().default('direct'), routing_key: z.string().nullable().default(null) }),
  ),
  'cancel-consumer': command('cancel_consumer', z.strictObject({ queue: nonEmpty('queue') })),
  'enable-events': command('enable_events'),
  'disable-events': command('disable_events'),
  revoke: command(
    'revoke',
    z.strictObject({
      task_id: ids('task_id'),
      terminate: z.boolean({ error: 'terminate must be true or false' }).default(false),
      signal: z.string().regex(/^SIG[A-Z0-9]+$/, { error: "signal must be a signal name such as 'SIGTERM'" }).default('SIGTERM'),
    }),
  ),
};

/** Every name a command answers to: the CLI's (pool-grow) and Celery's (pool_grow). */
const BY_NAME = new Map<string, { cliName: string; spec: CommandSpec }>(Object.entries(SPECS).flatMap(([cliName, spec]) => [[cliName, { cliName, spec }] as const, [spec.method, { cliName, spec }] as const]));

const INSPECTIONS = Object.keys(SPECS).filter((cliName) => SPECS[cliName]!.readOnly);

/** The body: the command's arguments, who is addressed, and how long replies are gathered. */
const requestBody = z.strictObject({
  arguments: z.record(z.string(), z.unknown(), { error: 'arguments must be an object of Celery argument names' }).default({}),
  destination: z.array(nonEmpty('each destination'), { error: 'destination must be a list of node names' }).min(1, { error: 'destination must name at least one node (leave it out to address every worker)' }).max(1000).optional(),
  pattern: nonEmpty('pattern').optional(),
  matcher: z.enum(['glob', 'pcre'], { error: "matcher must be 'glob' or 'pcre'" }).optional(),
  timeoutMs: z.number({ error: 'timeoutMs must be an integer from 1 to 60000' }).int({ error: 'timeoutMs must be an integer from 1 to 60000' }).min(1, { error: 'timeoutMs must be an integer from 1 to 60000' }).max(60_000, { error: 'timeoutMs must be an integer from 1 to 60000' }).default(1000),
});

/** What POST /api/control/:command answers. */
export interface ControlView {
  /** Each reply by node: the command's result there (`{ error }` for one the worker refused). */
  replies: Record<string, unknown>;
  /** The destinations that did not answer within timeoutMs. */
  missing: string[];
  /** Every addressed node answered (without destination: at least one did), and none refused. */
  ok: boolean;
}

export interface ControlRoutesOptions {
  app: Fennel;
  /** Whether the gateway has a token (FENNEL_GATEWAY_TOKEN): without one, only the inspections run. */
  tokenConfigured: boolean;
}

const isRefusal = (result: unknown): boolean => result !== null && typeof result === 'object' && 'error' in result;

/** A zod error on the arguments: each issue by argument, and what the command takes for an unknown name. */
function argumentReasons(error: z.ZodError, cliName: string, spec: CommandSpec): string {
  const takes = Object.keys(spec.args.shape);
  return error.issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') return `unknown argument${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}: ${cliName} takes ${takes.length ? takes.join(', ') : 'none'}`;
      return `arguments${issue.path.length ? `.${issue.path.map(String).join('.')}` : ''}: ${issue.message}`;
    })
    .join('; ');
}

export function registerControlRoutes(server: FastifyInstance, { app, tokenConfigured }: ControlRoutesOptions): void {
  server.post<{ Params: { command: string } }>('/api/control/:command', async (request, reply) => {
    const found = BY_NAME.get(request.params.command);
    if (!found) {
      const commands = Object.keys(SPECS);
      return reply.code(404).send({ error: `no control command '${request.params.command}'; one of: ${commands.join(', ')} (or Celery's names: pool_grow, …)`, code: 'COMMAND_NOT_FOUND', commands });
    }
    const { cliName, spec } = found;
    // Before anything else is read: on an open gateway, nobody may shut workers down or resize them.
    if (!spec.readOnly && !tokenConfigured) {
      throw new HttpError(403, `'${cliName}' changes the workers, and this gateway has no token: set FENNEL_GATEWAY_TOKEN for the gateway and send Authorization: Bearer <token>. Without one, only the inspections run (${INSPECTIONS.join(', ')})`, 'TOKEN_REQUIRED');
    }
    const parsed = requestBody.safeParse(request.body ?? {});
    if (!parsed.success) throw new HttpError(400, `invalid control request: ${reasons(parsed.error)}`, 'BAD_REQUEST');
    const { destination, pattern, matcher, timeoutMs } = parsed.data;
    if (destination && pattern) throw new HttpError(400, 'invalid control request: give destination or pattern, not both (a destination list wins, so the pattern would be ignored)', 'BAD_REQUEST');
    if (matcher && !pattern) throw new HttpError(400, 'invalid control request: matcher goes with a pattern', 'BAD_REQUEST');
    if (pattern && matcher === 'pcre') {
      try {
        new RegExp(pattern);
      } catch (error) {
        throw new HttpError(400, `invalid control request: pattern is not a regular expression: ${(error as Error).message}`, 'BAD_REQUEST');
      }
    }
    const args = spec.args.safeParse(parsed.data.arguments);
    if (!args.success) throw new HttpError(400, `arguments of '${cliName}' rejected: ${argumentReasons(args.error, cliName, spec)}`, 'INVALID_ARGUMENTS');

    // kombu ignores a pattern that comes without a matcher (everyone runs the command): glob, as the CLI's default.
    const outcome = await app.control.broadcast(spec.method, args.data, {
      timeoutMs,
      ...(destination ? { destination } : {}),
      ...(pattern ? { pattern, matcher: matcher ?? 'glob' } : {}),
    });
    const replies = Object.fromEntries(outcome.replies.map(({ node, result }) => [node, result]));
    const answered = destination ? outcome.missing.length === 0 : outcome.replies.length > 0;
    const view: ControlView = { replies, missing: outcome.missing, ok: answered && !outcome.replies.some(({ result }) => isRefusal(result)) };
    return view;
  });
}
