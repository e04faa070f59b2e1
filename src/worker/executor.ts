// The life of one delivery, top to bottom: decode → check (registered, expired, early) → mark started →
// run in the pool → store the outcome → acknowledge. Every path stores before it acks; if storing fails the
// message is handed back, so a task is never lost, only (rarely) run twice: at-least-once.

import { ActorHost } from '../actors/host.ts';
import type { Logger } from 'pino';
import type { Fennel } from '../app/fennel.ts';
import { backoffMs } from '../app/options.ts';
import { suggest } from '../app/suggest.ts';
import { decodeJson } from '../protocol/json.ts';
import { buildRetryMessage, parseTaskMessage, type TaskRequest } from '../protocol/message.ts';
import { exceptionInfo, nowIso, revokedMeta, withResultJson, type ExceptionInfo, type TaskMeta } from '../protocol/result.ts';
import { States } from '../protocol/states.ts';
import type { TaskEventType } from '../events/events.ts';
import type { Delivery } from '../transports/transport.ts';
import type { ErrorReport, Job, Outcome, Pool } from './pools/pool.ts';
import { callKey } from '../app/memo.ts';
import { storeOutcome, storeOutcomeAndAck } from '../app/refs.ts';
import { continueWorkflow, failWorkflow, inWorkflow, jobArgs } from './workflow.ts';
import { takesRefs } from './refs.ts';

export interface ExecutorContext {
  app: Fennel;
  /** The worker's actor host (--actors): actor messages go to it instead of the pool. */
  actors?: ActorHost | undefined;
  pool: Pool;
  log: Logger;
  /** Celery-style node name (`fennel.<pid>@host` by default, or the `-n` name), written into results. */
  workerName: string;
  /** True once the worker has handed its messages back (shutdown past the grace period): store nothing more. */
  abandoned(): boolean;
  /**
   * Takes a free pool slot: true at once if one is free, else a promise of one; false if the worker is
   * stopping and the message should go back.
   */
  acquireSlot(): boolean | Promise<boolean>;
  releaseSlot(): void;
  /** Waits for the task's turn under its rate limit; undefined if it has none or may start now. */
  throttle(taskName: string): Promise<void> | undefined;
  /** Task ids revoked (the backend's revoked set, as this worker last heard it). */
  revoked: { has(taskId: string): boolean };
  /** Whether the worker sends task events (-E): the hot path builds an event's fields only then. */
  taskEvents: boolean;
  /** Sends a task event (Celery's format) if the worker sends task events (-E); otherwise does nothing. */
  emit(type: TaskEventType, request: TaskRequest, fields?: Record<string, unknown>): void;
  /** Time limits set by remote control (`time_limit`), by task name: they replace the message's. */
  timeLimits: ReadonlyMap<string, { soft: number | null; hard: number | null }>;
  /** Counts a message this worker moved to the dead letters (inspect stats). */
  deadLettered(): void;
}

/**
 * What the worker knows of a delivery it holds, for inspection (`inspect active`, `reserved`, `query_task`):
 * the executor fills it in as it goes. No request yet: still being decoded.
 */
export interface HeldTask {
  request?: TaskRequest;
  /** When the task got its pool slot (ms since the epoch); undefined while it waits (reserved). */
  startedAt?: number;
}

const REQUEUE_PAUSE_MS = 1000;

const noop = (): void => {};
/** The longest pause between attempts to hand a delivery back while the broker is away. */
const MAX_REQUEUE_PAUSE_MS = 30_000;

/** Handles one delivery to the end. Never throws: every failure ends in an ack, a dead letter or a requeue. */
export async function execute(delivery: Delivery, ctx: ExecutorContext, held?: HeldTask): Promise<void> {
  let request: TaskRequest | undefined;
  let memo: MemoCall | undefined;
  try {
    // Each check is a plain test here, and its async handler runs only when it applies: most tasks pass them
    // all, and a worker running 20,000 tasks a second should not make a promise for each check of each one.
    if (ctx.app.signer) {
      const verdict = ctx.app.signer.verify(delivery.message);
      if (!verdict.ok) return await refuseUnsigned(verdict.reason, delivery, ctx);
    }
    const decoded = decode(delivery, ctx);
    if (!decoded.ok) return await refuseMalformed(decoded.error, delivery, ctx);
    request = decoded.request;
    if (held) held.request = request;
    const actorMessage = ctx.actors !== undefined && ActorHost.handles(request.name);
    if (!actorMessage && !ctx.app.registry.has(request.name)) return await refuseUnregistered(request, delivery, ctx);
    if (ctx.revoked.has(request.id)) return await discardRevoked(request, delivery, ctx);
    if (request.expires && request.expires.getTime() <= Date.now()) return await revokeExpired(request, delivery, ctx);
    // In this process, not a pool slot: an actor's instance lives here.
    if (actorMessage) return await ctx.actors!.handle(request, delivery);
    if (request.eta && (await deferIfEarly(request, delivery, ctx))) return;
    const turn = ctx.throttle(request.name);
    if (turn) await turn;
    // A short task the pool pipelines (slots.ts) takes no permit: its slot is shared, and the pool keeps the order. A
    // time-limited one runs alone (its limit runs from when it is sent), so it takes a permit like any lone job.
    const ahead = ctx.pool.takesAhead?.(request.name) === true && !timeLimited(request, ctx);
    const release = ahead ? noop : (): void => ctx.releaseSlot();
    if (!ahead) {
      const slot = ctx.acquireSlot();
      if (!(slot === true || (slot !== false && (await slot)))) {
        await delivery.reject({ requeue: true });
        return;
      }
      // Waiting for a slot can take long: a revocation may have arrived meanwhile.
      if (ctx.revoked.has(request.id)) {
        release();
        return await discardRevoked(request, delivery, ctx);
      }
    }
    // A call released by its inputs (app/refs.ts) is sent twice when a worker dies between sending it and recording
    // the send, and the input's redelivery sends it again. Where the broker drops a duplicate (the `deduplication`
    // capability, which released calls are sent with; a copy it let through finds the call's state stored), nothing
    // more is needed; elsewhere (RabbitMQ) the copy that comes second is dropped here, by a once-only claim per call and
    // retry. A copy the broker delivers again (its holder died) is the same send, and runs. Without this, the only
    // guard was the call's stored state, which a call has not yet while it waits in a prefetch window or begins
    // (RabbitMQ ran such a call twice in CI).
    if (!delivery.redelivered && !ctx.app.transport.capabilities.deduplication && takesRefs(request) && !(await firstCopy(request, ctx))) {
      release();
      ctx.log.info({ id: request.id, task: request.name }, `task ${request.name}[${request.id}]: a second copy of a released call, sent again after a worker died; dropped`);
      await delivery.ack();
      return;
    }
    if (held) held.startedAt = Date.now();
    // STARTED is stored if the task is still running STARTED_AFTER_MS from now, and no PROGRESS came first: a
    // task that ends sooner (most short ones, including the round trip to a pool slot) never builds it. It costs
    // the task no round trip and is not awaited: the backend applies one process's stores in call order, so it
    // can never land after the outcome. A STARTED that fails to store costs nothing but the state.
    const marks = ctx.app.config.trackStarted && !request.ignoreResult ? startedMarks(ctx) : undefined;
    marks?.add(request);
    ctx.emit('task-started', request);
    const startedAt = performance.now();
    let outcome: Outcome;
    try {
      // A chord callback sent by reference reads its header's results here (or fails if they are gone).
      const found = jobArgs(ctx.app, request);
      const args = Array.isArray(found) ? found : await found;
      const onProgress = (metaJson: string): void => {
        marks?.cancel(request!);
        void storeProgress(request!, metaJson, ctx);
      };
      // A memoized task is looked up in its cache first (src/app/memo.ts); a hit is its outcome, without running.
      memo = Array.isArray(args) ? memoLookup(ctx, request, args) : undefined;
      const cached = memo && (await memo.cached);
      outcome = cached !== undefined ? { kind: 'success', resultJson: cached } : Array.isArray(args) ? await ctx.pool.run(toJob(request, args, ctx), { onProgress }) : args;
    } finally {
      marks?.cancel(request);
      // The slot is free as soon as the function has returned: the next task runs in it while this one's
      // outcome is stored and acknowledged (the delivery stays held, and unacked, until then).
      release();
    }
    const runtimeSec = (performance.now() - startedAt) / 1000;
    // Past the grace period the worker has handed this message back already: its outcome is not ours to store.
    if (ctx.abandoned()) return;
    // A memoized task's new result goes to its cache first (within the cache's time limit; a cache that fails is only
    // counted), so that whoever has read the outcome finds it in the cache when they call again.
    if (memo && outcome.kind === 'success' && !memo.hit()) await memo.store(outcome.resultJson);
    await settle(request, delivery, outcome, runtimeSec, ctx);
  } catch (error) {
    if (ctx.abandoned()) return;
    // The outcome could not be stored (or the message not settled): hand it back to run again, after a
    // pause, so a result store that is down does not turn into a hot loop of redeliveries.
    const label = request ? `task ${request.name}[${request.id}]` : 'a delivery';
    ctx.log.error({ err: error, id: request?.id }, `could not complete ${label}; returning it to the queue in ${REQUEUE_PAUSE_MS} ms`);
    await handBack(delivery, label, ctx);
  }
}

/**
 * Returns a delivery to its queue after a failure, trying again with backoff for as long as the broker is away.
 * A delivery that cannot be settled is still held: it fills a place of the prefetch window and its lease is
 * renewed, so giving up here would leave the place taken, and the message unrun, for as long as the worker
 * lives. It ends when the requeue succeeds, or when the worker has handed everything back (its shutdown).
 */
async function handBack(delivery: Delivery, label: string, ctx: ExecutorContext): Promise<void> {
  for (let pause = REQUEUE_PAUSE_MS; ; pause = Math.min(pause * 2, MAX_REQUEUE_PAUSE_MS)) {
    await new Promise((resolve) => setTimeout(resolve, pause));
    if (ctx.abandoned()) return;
    try {
      await delivery.reject({ requeue: true });
      return;
    } catch (error) {
      ctx.log.warn({ err: error }, `could not return ${label} to the queue (${(error as Error).message}); trying again in ${Math.min(pause * 2, MAX_REQUEUE_PAUSE_MS)} ms`);
    }
  }
}

/** The time limits a task runs under: remote control's for its name (`time_limit`), else its message's. */
function limitsOf(request: TaskRequest, ctx: ExecutorContext): { soft: number | null; hard: number | null } {
  const set = ctx.timeLimits.size === 0 ? undefined : ctx.timeLimits.get(request.name);
  return set ?? { soft: request.softTimeLimitSec, hard: request.timeLimitSec };
}

function timeLimited(request: TaskRequest, ctx: ExecutorContext): boolean {
  const limits = limitsOf(request, ctx);
  return Boolean(limits.soft || limits.hard);
}

function toJob(request: TaskRequest, args: unknown[], ctx: ExecutorContext): Job {
  const limits = limitsOf(request, ctx);
  return {
    id: request.id,
    name: request.name,
    args,
    kwargs: request.kwargs,
    retries: request.retries,
    queue: request.queue,
    timeLimitSec: limits.hard,
    softTimeLimitSec: limits.soft,
  };
}

/** Parses the message, and tells the log and the event stream it was received. */
function decode(delivery: Delivery, ctx: ExecutorContext): { ok: true; request: TaskRequest } | { ok: false; error: unknown } {
  let request: TaskRequest;
  try {
    request = parseTaskMessage(delivery.message);
  } catch (error) {
    return { ok: false, error };
  }
  if (ctx.log.isLevelEnabled('info')) {
    ctx.log.info({ task: request.name, id: request.id, redelivered: delivery.redelivered || undefined }, 'Task %s[%s] received', request.name, request.id);
  }
  if (ctx.taskEvents) {
    ctx.emit('task-received', request, {
      name: request.name,
      args: request.args,
      kwargs: request.kwargs,
      retries: request.retries,
      eta: request.eta?.toISOString() ?? null,
      expires: request.expires?.toISOString() ?? null,
      root_id: request.rootId,
      parent_id: request.parentId,
      queue: delivery.queue,
    });
  }
  return { ok: true, request };
}

/** A message that does not parse goes to the dead letters with the reason. */
async function refuseMalformed(error: unknown, delivery: Delivery, ctx: ExecutorContext): Promise<void> {
  const reason = (error as Error).message;
  const id = delivery.message.headers['id'];
  ctx.log.error({ queue: delivery.queue, reason }, `malformed message on queue ${delivery.queue}: ${reason}; moved to dead letters`);
  // If the message names an id, its caller learns of the failure at once instead of waiting for ever.
  if (typeof id === 'string') await storeOutcome(ctx.app, failureMeta(id, exceptionInfo('ProtocolError', reason, 'fennel'), null), delivery.redelivered);
  ctx.deadLettered();
  await delivery.reject({ requeue: false, reason: `ProtocolError: ${reason}` });
}

/**
 * A message that is not signed with one of the worker's keys (signingKey) goes to the dead letters, never run. No
 * outcome is stored under the id it names: whoever forged it must not be able to fail, or answer for, a real task.
 */
async function refuseUnsigned(reason: string, delivery: Delivery, ctx: ExecutorContext): Promise<void> {
  const headers = delivery.message.headers;
  const named = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value ?? null));
  const replyTo = delivery.message.properties.reply_to;
  ctx.log.warn(
    { queue: delivery.queue, task: headers['task'], id: headers['id'], replyTo, origin: headers['origin'], reason },
    `refused a message on queue ${delivery.queue} (task ${named(headers['task'])}, id ${named(headers['id'])}, reply_to ${named(replyTo)}): ${reason}; moved to dead letters`,
  );
  ctx.deadLettered();
  await delivery.reject({ requeue: false, reason: `SignatureError: ${reason}` });
}

/** Celery's behaviour for an unknown task (FAILURE NotRegistered, so get() fails fast), plus a dead letter. */
async function refuseUnregistered(request: TaskRequest, delivery: Delivery, ctx: ExecutorContext): Promise<void> {
  const hint = suggest(request.name, ctx.app.registry.keys());
  const reason = `NotRegistered: ${request.name}${hint ? ` — did you mean '${hint}'?` : ''}`;
  ctx.log.error({ task: request.name, id: request.id }, `Received unregistered task ${request.name}[${request.id}]${hint ? ` — did you mean '${hint}'?` : ''}; moved to dead letters`);
  const info: ExceptionInfo = { exc_type: 'NotRegistered', exc_message: [request.name], exc_module: 'celery.exceptions' };
  await storeOutcome(ctx.app, failureMeta(request.id, info, null, request, ctx), delivery.redelivered);
  // What in its workflow depended on it fails too, as after any failure (else a chain's result waits for ever).
  if (inWorkflow(request)) await failWorkflow(ctx.app, request, info, null);
  ctx.deadLettered();
  await delivery.reject({ requeue: false, reason });
}

/** A revoked task is never run: REVOKED is stored (Celery's TaskRevokedError) and the message acknowledged. */
async function discardRevoked(request: TaskRequest, delivery: Delivery, ctx: ExecutorContext): Promise<void> {
  ctx.log.info({ task: request.name, id: request.id }, `Discarding revoked task: ${request.name}[${request.id}]`);
  await storeOutcome(ctx.app, revokedResult(request, 'revoked', ctx), delivery.redelivered);
  ctx.emit('task-revoked', request, { expired: false, terminated: false });
  await delivery.ack();
}

/** A task past its `expires` is never run: REVOKED (expired) is stored and the message acknowledged. */
async function revokeExpired(request: TaskRequest, delivery: Delivery, ctx: ExecutorContext): Promise<void> {
  ctx.log.info({ task: request.name, id: request.id }, `Task ${request.name}[${request.id}] expired; revoked`);
  await storeOutcome(ctx.app, revokedResult(request, 'expired', ctx), delivery.redelivered);
  ctx.emit('task-revoked', request, { expired: true, terminated: false });
  await delivery.ack();
}

/**
 * A message due later than now (an eta from a producer that put it straight on the queue) goes back to the
 * broker's delayed delivery rather than being held in this worker's memory.
 */
async function deferIfEarly(request: TaskRequest, delivery: Delivery, ctx: ExecutorContext): Promise<boolean> {
  if (!request.eta || request.eta.getTime() <= Date.now() + 5) return false;
  const transport = ctx.app.transport;
  if (!transport.capabilities.delayedDelivery) return false;
  await transport.publish(delivery.message, { queue: delivery.queue, priority: request.priority, delayUntil: request.eta });
  await delivery.ack();
  return true;
}

/**
 * How long a task runs before its STARTED is stored. It was one event-loop turn, which every task run in a process
 * or thread slot outlasts (the round trip to the slot): each paid one more store, and its waiters one more
 * wake-up, for a state no one could see.
 */
const STARTED_AFTER_MS = 5;

/**
 * The started tasks whose STARTED is still due: one timer for all of them stores it for those still running
 * STARTED_AFTER_MS after they began, with no PROGRESS reported.
 */
class StartedMarks {
  /** Tasks whose STARTED is not stored yet, with when it is due, in that order (the delay is the same for all). */
  private due = new Map<TaskRequest, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ctx: ExecutorContext) {}

  add(request: TaskRequest): void {
    this.due.set(request, performance.now() + STARTED_AFTER_MS);
    this.timer ??= setTimeout(() => this.store(), STARTED_AFTER_MS);
  }

  /** The task ended, or reported PROGRESS: no STARTED for it. */
  cancel(request: TaskRequest): void {
    this.due.delete(request);
  }

  private store(): void {
    this.timer = undefined;
    const now = performance.now();
    for (const [request, at] of this.due) {
      if (at > now) {
        this.timer = setTimeout(() => this.store(), Math.max(1, at - now));
        return;
      }
      this.due.delete(request);
      void markStarted(request, this.ctx).catch((error: unknown) => this.ctx.log.warn({ err: error, id: request.id }, 'could not store STARTED'));
    }
  }
}

const startedMarksOf = new WeakMap<ExecutorContext, StartedMarks>();

function startedMarks(ctx: ExecutorContext): StartedMarks {
  let marks = startedMarksOf.get(ctx);
  if (!marks) startedMarksOf.set(ctx, (marks = new StartedMarks(ctx)));
  return marks;
}

/** True the first time this call (at this retry) comes to run: the once-only claim that drops a second copy of a released call. */
async function firstCopy(request: TaskRequest, ctx: ExecutorContext): Promise<boolean> {
  const { backend } = ctx.app;
  return backend.claimOnce ? backend.claimOnce(`run-${request.id}-${request.retries}`) : true;
}

async function markStarted(request: TaskRequest, ctx: ExecutorContext): Promise<void> {
  await ctx.app.backend.store(meta(request, ctx, States.STARTED, { pid: process.pid, hostname: ctx.workerName }));
}

async function storeProgress(request: TaskRequest, metaJson: string, ctx: ExecutorContext): Promise<void> {
  try {
    await ctx.app.backend.store(meta(request, ctx, States.PROGRESS, decodeJson(metaJson)));
  } catch (error) {
    ctx.log.warn({ err: error, id: request.id }, 'could not store progress');
  }
}

/** A memoized call in the worker: its cache lookup, and how to store its result. */
interface MemoCall {
  /** The result JSON the cache holds, or undefined (a miss, or a cache that failed). */
  cached: Promise<string | undefined>;
  hit(): boolean;
  store(resultJson: string): Promise<boolean>;
}

/** Undefined for a task that is not memoized (one map lookup), or one whose key cannot be made. */
function memoLookup(ctx: ExecutorContext, request: TaskRequest, args: unknown[]): MemoCall | undefined {
  const memo = ctx.app.registry.get(request.name)?.memo;
  if (!memo) return undefined;
  let key: string;
  try {
    key = callKey(request.name, memo, args, Object.keys(request.kwargs).length ? request.kwargs : undefined);
  } catch (error) {
    ctx.log.warn({ err: error, id: request.id }, `task ${request.name}[${request.id}]: no cache key (${(error as Error).message}); running it uncached`);
    return undefined;
  }
  const cache = ctx.app.cacheFor(memo);
  let hit = false;
  const cached = cache.getText(key).then((text) => {
    if (text === undefined) return undefined;
    try {
      decodeJson(text); // what another program left under the key may not be a result: then it is a miss
    } catch (error) {
      ctx.log.warn({ id: request.id }, `task ${request.name}[${request.id}]: the cache holds something under ${key} that is not a result (${(error as Error).message}); running it`);
      return undefined;
    }
    hit = true;
    return text;
  });
  return { cached, hit: () => hit, store: (resultJson) => cache.setText(key, resultJson, memo.ttlSec) };
}

/** Stores the outcome, then acknowledges (or dead-letters) the delivery. */
async function settle(request: TaskRequest, delivery: Delivery, outcome: Outcome, runtimeSec: number, ctx: ExecutorContext): Promise<void> {
  if (outcome.kind === 'success') {
    // The common case first, building no log line or event it will not send.
    const workflow = inWorkflow(request);
    // Outside a workflow, the ack may ride in the store's own transaction (sqlite://, one file): one commit, not two.
    // In one, the next steps are in the broker before this message is acknowledged, so the ack waits for them.
    const acked = !request.ignoreResult && (await storeOutcomeAndAck(ctx.app, withResultJson(meta(request, ctx, States.SUCCESS, decodeJson(outcome.resultJson)), outcome.resultJson), delivery.redelivered, workflow ? undefined : delivery.joinableAck));
    if (ctx.log.isLevelEnabled('info')) ctx.log.info({ task: request.name, id: request.id, runtimeSec: Number(runtimeSec.toFixed(6)) }, `Task ${request.name}[${request.id}] succeeded in ${runtimeSec.toFixed(6)}s: ${truncate(outcome.resultJson)}`);
    if (ctx.taskEvents) ctx.emit('task-succeeded', request, { result: truncate(outcome.resultJson), runtime: runtimeSec });
    if (workflow) await continueWorkflow(ctx.app, request, delivery, outcome.resultJson);
    if (!acked) await delivery.ack();
    return;
  }
  const label = `Task ${request.name}[${request.id}]`;
  const fields = { task: request.name, id: request.id, runtimeSec: Number(runtimeSec.toFixed(6)) };
  switch (outcome.kind) {
    case 'failure':
      await recordFailure(request, delivery, errorInfo(outcome.error), outcome.error.stack, runtimeSec, ctx);
      ctx.log.error({ ...fields, error: outcome.error.message }, `${label} raised ${outcome.error.name}: ${outcome.error.message}`);
      await delivery.ack();
      return;
    case 'retry': {
      const limit = maxRetries(request, ctx);
      if (request.retries >= limit) {
        // No retries left: the task fails with the error that made it retry, or, without one, Celery's
        // MaxRetriesExceededError.
        const info = outcome.error
          ? errorInfo(outcome.error)
          : exceptionInfo('MaxRetriesExceededError', `${request.name}[${request.id}] retried ${request.retries} times (maxRetries ${limit})${outcome.reason ? `: ${outcome.reason}` : ''}`, 'celery.exceptions');
        await recordFailure(request, delivery, info, outcome.error?.stack ?? null, runtimeSec, ctx);
        ctx.log.error(fields, `${label} gave up after ${request.retries} retries: ${info.exc_type}: ${String(info.exc_message[0])}`);
        await delivery.ack();
        return;
      }
      const task = ctx.app.registry.get(request.name)?.options;
      const countdownSec = outcome.countdownSec ?? backoffMs(task?.retryBackoff, request.retries) / 1000;
      const info = outcome.error ? errorInfo(outcome.error) : exceptionInfo('Retry', outcome.reason ?? `retry in ${countdownSec} s`, 'celery.exceptions');
      await retry(request, delivery, countdownSec, info, ctx);
      ctx.log.info(fields, `${label} retry: in ${countdownSec}s (attempt ${request.retries + 1})`);
      return;
    }
    case 'reject': {
      const info = exceptionInfo('Reject', outcome.reason, 'celery.exceptions');
      await storeOutcome(ctx.app, failureMeta(request.id, info, null, request, ctx), delivery.redelivered);
      if (inWorkflow(request)) await failWorkflow(ctx.app, request, info, null);
      ctx.log.warn(fields, `${label} rejected: ${outcome.reason}; moved to dead letters`);
      ctx.emit('task-rejected', request, { requeue: false });
      ctx.deadLettered();
      await delivery.reject({ requeue: false, reason: `Reject: ${outcome.reason}` });
      return;
    }
    case 'lost': {
      // A message that keeps killing its slot is poison: after `poisonAfterCrashes` it goes to the dead
      // letters with the reason, instead of crashing slots for ever (each crash also spends a retry).
      const crashes = request.crashes + 1;
      const info = exceptionInfo('WorkerLostError', outcome.detail, 'billiard.exceptions');
      const fail = async (why: string): Promise<void> => {
        await recordFailure(request, delivery, info, null, runtimeSec, ctx);
        ctx.log.error(fields, `${label} lost its pool slot (${outcome.detail}); ${why}`);
      };
      if (crashes >= ctx.app.config.poisonAfterCrashes) {
        await fail(`it has crashed its slot ${crashes} times: moved to dead letters`);
        ctx.deadLettered();
        await delivery.reject({ requeue: false, reason: `Poison: crashed its pool slot ${crashes} times (last: ${outcome.detail})` });
      } else if (request.retries < maxRetries(request, ctx)) {
        await retry(request, delivery, 0, info, ctx, crashes);
        ctx.log.error(fields, `${label} lost its pool slot (${outcome.detail}); retrying (attempt ${request.retries + 1})`);
      } else {
        await fail('no retries left');
        await delivery.ack();
      }
      return;
    }
    case 'terminated':
      await storeOutcome(ctx.app, revokedResult(request, 'terminated', ctx), delivery.redelivered);
      ctx.log.warn(fields, `${label} terminated (revoked with terminate)`);
      ctx.emit('task-revoked', request, { expired: false, terminated: true });
      await delivery.ack();
      return;
    case 'timeout': {
      const info = exceptionInfo('TimeLimitExceeded', `hard time limit (${outcome.seconds} s) exceeded`, 'billiard.exceptions');
      await recordFailure(request, delivery, info, null, runtimeSec, ctx);
      ctx.log.error(fields, `${label} killed: hard time limit of ${outcome.seconds}s exceeded`);
      await delivery.ack();
      return;
    }
  }
}

/** Stores the task's FAILURE, fails what in its workflow depended on it, and sends task-failed. */
async function recordFailure(request: TaskRequest, delivery: Delivery, info: ExceptionInfo, traceback: string | null, runtimeSec: number, ctx: ExecutorContext): Promise<void> {
  await storeOutcome(ctx.app, failureMeta(request.id, info, traceback, request, ctx), delivery.redelivered);
  if (inWorkflow(request)) await failWorkflow(ctx.app, request, info, traceback);
  ctx.emit('task-failed', request, { exception: `${info.exc_type}(${JSON.stringify(info.exc_message[0] ?? '')})`, traceback, runtime: runtimeSec });
}

/** A REVOKED meta for this task: Celery's TaskRevokedError with the reason (revoked, expired, terminated). */
function revokedResult(request: TaskRequest, reason: string, ctx: ExecutorContext): TaskMeta {
  return meta(request, ctx, States.REVOKED, revokedMeta(request.id, reason).result);
}

/** Publishes the next attempt before acknowledging this one, so a crash in between duplicates, never loses. */
async function retry(request: TaskRequest, delivery: Delivery, countdownSec: number, info: ExceptionInfo, ctx: ExecutorContext, crashes = request.crashes): Promise<void> {
  const eta = countdownSec > 0 ? new Date(Date.now() + countdownSec * 1000) : null;
  // RETRY is stored first, so it can never overwrite the outcome of the attempt published next.
  await ctx.app.backend.store(meta(request, ctx, States.RETRY, info));
  const next = buildRetryMessage(request, eta, delivery.queue, { retries: request.retries + 1, crashes });
  ctx.app.signer?.sign(next);
  await ctx.app.transport.publish(next, { queue: delivery.queue, priority: request.priority, delayUntil: eta });
  ctx.emit('task-retried', request, { exception: `${info.exc_type}(${JSON.stringify(info.exc_message[0] ?? '')})`, traceback: null });
  await delivery.ack();
}

function maxRetries(request: TaskRequest, ctx: ExecutorContext): number {
  return ctx.app.registry.get(request.name)?.options.maxRetries ?? ctx.app.config.maxRetries;
}

function errorInfo(error: ErrorReport): ExceptionInfo {
  return exceptionInfo(error.name, error.message);
}

/**
 * Arguments are kept in stored results (Celery's result_extended) for monitors, but only when small: a chord
 * callback or a merge step can take megabytes, which every STARTED, SUCCESS and FAILURE would write again.
 */
const MAX_ARGS_IN_RESULT = 4096;

/** The meta of a state of this task: baseMeta with its status and result (built once, not spread). */
function meta(request: TaskRequest, ctx: ExecutorContext, status: string, result: unknown): TaskMeta {
  const m = baseMeta(request, ctx);
  m.status = status;
  m.result = result;
  return m;
}

function baseMeta(request: TaskRequest, ctx: ExecutorContext): TaskMeta {
  const small = request.bodyLength <= MAX_ARGS_IN_RESULT;
  return {
    status: States.PENDING,
    result: null,
    traceback: null,
    children: [],
    date_done: nowIso(),
    task_id: request.id,
    name: request.name,
    args: small ? request.args : null,
    kwargs: small ? request.kwargs : null,
    worker: ctx.workerName,
    retries: request.retries,
    queue: request.queue,
    parent_id: request.parentId,
    group_id: request.group,
  };
}

function failureMeta(id: string, info: ExceptionInfo, traceback: string | null, request?: TaskRequest, ctx?: ExecutorContext): TaskMeta {
  const base: TaskMeta = request && ctx ? baseMeta(request, ctx) : { status: States.FAILURE, result: null, traceback: null, children: [], date_done: nowIso(), task_id: id };
  return { ...base, status: States.FAILURE, result: info, traceback };
}

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}
