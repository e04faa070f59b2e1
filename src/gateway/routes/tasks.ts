// The task API: submit (POST /api/tasks/:name), read (GET /api/tasks/:id), revoke (DELETE /api/tasks/:id).
// A submission answers 202 only once the broker has confirmed the message (`await result.sent`): a client that
// got an id can count on the task being queued. Only tasks registered with `expose: true` can be called; any
// other name is 404, so the API does not tell which internal tasks exist.

import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { CallOptions, Fennel } from '../../index.ts';
import { brokerDown, HttpError } from '../http-errors.ts';
import type { Monitor } from '../monitor.ts';
import { viewOfMeta } from '../views.ts';

const isoDate = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

/** The body of a submission. Per-call options are a safe subset of CallOptions: routing stays the app's decision. */
const submission = z
  .object({
    args: z.array(z.unknown()).default([]),
    kwargs: z.record(z.string(), z.unknown()).optional(),
    options: z
      .object({
        countdown: z.number().nonnegative().optional(),
        eta: isoDate.optional(),
        expires: z.union([z.number().positive(), isoDate]).optional(),
        priority: z.number().int().min(0).max(255).optional(),
      })
      .strict()
      .default({}),
  })
  .strict();

const taskId = z.string().min(1).max(200);

export interface TaskRoutesOptions {
  app: Fennel;
  monitor: Monitor;
  /** How long to wait for the broker to confirm a publish before answering 503. */
  publishTimeoutMs: number;
}

/** "args.1: Expected number, received string; kwargs: …" */
function reasons(error: z.ZodError, prefix = ''): string {
  return error.issues.map((i) => `${[prefix, ...i.path.map(String)].filter(Boolean).join('.') || '(body)'}: ${i.message}`).join('; ');
}

export function registerTaskRoutes(server: FastifyInstance, { app, monitor, publishTimeoutMs }: TaskRoutesOptions): void {
  server.post<{ Params: { name: string } }>('/api/tasks/:name', async (request, reply) => {
    const name = request.params.name;
    const task = app.registry.get(name);
    if (!task?.options.expose) throw new HttpError(404, `no task named '${name}' is exposed over HTTP`, 'TASK_NOT_FOUND');
    const parsed = submission.safeParse(request.body ?? {});
    if (!parsed.success) throw new HttpError(400, `invalid submission: ${reasons(parsed.error)}`, 'BAD_REQUEST');
    let args: unknown[] = parsed.data.args;
    if (task.options.schema) {
      const checked = task.options.schema.safeParse(args);
      if (!checked.success) throw new HttpError(400, `arguments of '${name}' rejected: ${reasons(checked.error, 'args')}`, 'INVALID_ARGUMENTS');
      if (Array.isArray(checked.data)) args = checked.data as unknown[];
    }
    const { countdown, eta, expires, priority } = parsed.data.options;
    const call: CallOptions = {
      ...(parsed.data.kwargs ? { kwargs: parsed.data.kwargs } : {}),
      ...(countdown !== undefined ? { countdown } : {}),
      ...(eta !== undefined ? { eta } : {}),
      ...(expires !== undefined ? { expires } : {}),
      ...(priority !== undefined ? { priority } : {}),
    };
    const result = app.sendTask(name, args, call); // throws at once for bad input (413, 400) or a broker that cannot open
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(brokerDown(`the broker did not confirm the message within ${publishTimeoutMs} ms (task ${result.id} may still be queued)`)), publishTimeoutMs);
    });
    try {
      await Promise.race([result.sent, timeout]);
    } finally {
      clearTimeout(timer);
    }
    monitor.submitted(name);
    return reply.code(202).header('location', `/api/tasks/${result.id}`).send({ id: result.id, state: 'PENDING' });
  });

  server.get<{ Params: { id: string } }>('/api/tasks/:id', async (request) => {
    const id = taskId.safeParse(request.params.id);
    if (!id.success) throw new HttpError(400, 'a task id is 1 to 200 characters', 'BAD_REQUEST');
    // Celery's rule: an id nothing is stored for is PENDING (it may be queued, or unknown).
    return viewOfMeta(await app.asyncResult(id.data).refresh());
  });

  server.delete<{ Params: { id: string }; Querystring: { terminate?: string } }>('/api/tasks/:id', async (request, reply) => {
    const id = taskId.safeParse(request.params.id);
    if (!id.success) throw new HttpError(400, 'a task id is 1 to 200 characters', 'BAD_REQUEST');
    const terminate = request.query.terminate === 'true' || request.query.terminate === '1';
    await app.revoke(id.data, { terminate });
    return reply.code(202).send({ id: id.data, revoked: true, terminate });
  });
}
