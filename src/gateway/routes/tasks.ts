// The task API: submit (POST /api/tasks/:name), read (GET /api/tasks/:id), revoke (DELETE /api/tasks/:id).
// A submission answers 202 only once the broker has confirmed the message (`await result.sent`): a client that
// got an id can count on the task being queued. Only tasks registered with `expose: true` can be called; any
// other name is 404, so the API does not tell which internal tasks exist.

import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { READY_STATES, States, type CallOptions, type Fennel } from '../../index.ts';
import { checkArguments, reasons } from '../arguments.ts';
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

export function registerTaskRoutes(server: FastifyInstance, { app, monitor, publishTimeoutMs }: TaskRoutesOptions): void {
  server.post<{ Params: { name: string } }>('/api/tasks/:name', async (request, reply) => {
    const name = request.params.name;
    const task = app.registry.get(name);
    if (!task?.options.expose) throw new HttpError(404, `no task named '${name}' is exposed over HTTP`, 'TASK_NOT_FOUND');
    const parsed = submission.safeParse(request.body ?? {});
    if (!parsed.success) throw new HttpError(400, `invalid submission: ${reasons(parsed.error)}`, 'BAD_REQUEST');
    const checked = checkArguments(task.options.schema, parsed.data.args, parsed.data.kwargs);
    if (!checked.ok) throw new HttpError(400, `arguments of '${name}' rejected: ${checked.reason}`, 'INVALID_ARGUMENTS');
    const { args, kwargs } = checked;
    const { countdown, eta, expires, priority } = parsed.data.options;
    const call: CallOptions = {
      ...(kwargs ? { kwargs } : {}),
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

  // Revoking answers what happened. A task that has finished is not revoked (409 with its state): the answer
  // must not say "revoked" while the task stays SUCCESS. An id nothing is stored for is revoked all the same,
  // as Celery allows, since its message may still be waiting in a queue; the answer says so.
  server.delete<{ Params: { id: string }; Querystring: { terminate?: string } }>('/api/tasks/:id', async (request, reply) => {
    const id = taskId.safeParse(request.params.id);
    if (!id.success) throw new HttpError(400, 'a task id is 1 to 200 characters', 'BAD_REQUEST');
    const terminate = request.query.terminate === 'true' || request.query.terminate === '1';
    const before = (await app.asyncResult(id.data).refresh()).status;
    if (nothingToRevoke(before, terminate)) return reply.code(409).send(alreadyFinished(id.data, before));
    await app.revoke(id.data, { terminate });
    // It may have finished between the read and the revoke: app.revoke() leaves a finished task's state alone.
    const after = (await app.asyncResult(id.data).refresh()).status;
    if (after !== States.REVOKED && READY_STATES.has(after)) return reply.code(409).send(alreadyFinished(id.data, after));
    return reply.code(202).send({ id: id.data, revoked: true, terminate, state: after, previousState: before, ...revokeNote(before, terminate, app.config.revokeExpiresSec) });
  });
}

/**
 * A final state leaves nothing to revoke, except REVOKED with terminate: a task revoked without terminate runs on
 * (REVOKED is stored while it runs), and revoking it again with terminate is the only way left to stop it.
 */
function nothingToRevoke(state: string, terminate: boolean): boolean {
  return READY_STATES.has(state) && !(state === States.REVOKED && terminate);
}

function alreadyFinished(id: string, state: string): { error: string; code: string; id: string; state: string } {
  const why = state === States.REVOKED ? 'was revoked already (?terminate=true stops a run still in progress)' : `has already finished (${state}): there is nothing to revoke`;
  return { error: `task ${id} ${why}`, code: 'TASK_ALREADY_FINISHED', id, state };
}

/** What a 202 cannot say by its state alone: a revocation that has not reached a task yet, or will not stop it. */
function revokeNote(before: string, terminate: boolean, revokeExpiresSec: number): { note?: string } {
  if (before === States.PENDING) {
    return { note: `nothing is stored for this id yet: the task may still be waiting in a queue (a worker that receives it within ${revokeExpiresSec} s discards it), or may never have been sent` };
  }
  if (!terminate && (before === States.STARTED || before === States.PROGRESS)) {
    return { note: 'the task is running: a revoke without ?terminate=true does not stop it, and its outcome replaces REVOKED when it ends' };
  }
  return {};
}
