// Object references (Ray's ObjectRef): an AsyncResult passed as an argument. The call is not sent at once: it is
// parked in the result backend on the tasks whose results it takes (its inputs), and sent to its queue by whoever
// stores the outcome of its last input. No worker waits, and no slot or prefetch place is held while it waits.
//
//   producer   `merge.delay(a, b)`: the arguments a and b become ResultRefs on the wire; once a's and b's own
//              messages are in the broker, backend.park(merge's id, [a, b], the message and its route). If both
//              are done already, park says so and the producer sends the call itself; if one failed, the call
//              fails (DependencyError) or is revoked without being sent.
//   worker     stores every outcome through storeOutcome(): backend.settle() stores it and hands back the calls it
//              releases (atomically against park: no release is ever missed), which are sent (SUCCESS) or
//              failed in turn (FAILURE, REVOKED: their own dependents follow, through the same path).
//   the call   a worker reads each input's result from the backend just before running it (worker/refs.ts).
//
// At least once: the worker sends what an outcome released before it acknowledges the input's message. If it dies
// in between, the input runs again, its outcome is stored again, and settle() hands the same calls back marked
// `again`: they are sent again only if no send of them was recorded (a once-only claim in the backend, taken after
// the first send), the call has not started (its stored state), and with the broker's deduplication where it has
// it. A worker that dies between a publish and its record still leaves two copies where the broker has no
// deduplication (RabbitMQ): the worker that gets the second drops it (worker/executor.ts, firstCopy).

import type { ParkOutcome, ReleasedCall, ResultBackend } from '../backends/backend.ts';
import { ConfigError } from '../errors.ts';
import { ResultRef } from '../protocol/json.ts';
import type { WireMessage } from '../protocol/message.ts';
import { exceptionInfo, nowIso, revokedMeta, type TaskMeta } from '../protocol/result.ts';
import { States } from '../protocol/states.ts';
import type { JoinableWrite } from '../clients/sqlite-file.ts';
import type { Route, Transport } from '../transports/transport.ts';
import { AsyncResult } from './result.ts';

/** A call's arguments with its references taken out: what goes on the wire, and the results it waits for. */
export interface WithRefs {
  args: unknown[];
  kwargs: Record<string, unknown> | undefined;
  inputs: Array<AsyncResult<unknown>>;
}

/**
 * Replaces each AsyncResult among the arguments (and the values of `kwargs`) by a ResultRef. Undefined when there
 * is none (nearly every call: one instanceof per argument). References are read at the top level only, as Ray's
 * are: one inside an array or object stays a handle the task cannot use, and is refused by the codec.
 */
export function takeRefs(args: readonly unknown[], kwargs: Record<string, unknown> | undefined): WithRefs | undefined {
  let found = false;
  for (const arg of args) if (arg instanceof AsyncResult) found = true;
  if (kwargs) for (const value of Object.values(kwargs)) if (value instanceof AsyncResult) found = true;
  if (!found) return undefined;
  const inputs: Array<AsyncResult<unknown>> = [];
  const swap = (value: unknown): unknown => {
    if (!(value instanceof AsyncResult)) return value;
    inputs.push(value);
    return new ResultRef(value.id);
  };
  return { args: args.map(swap), kwargs: kwargs && Object.fromEntries(Object.entries(kwargs).map(([k, v]) => [k, swap(v)])), inputs };
}

/** What is parked: the message and where it goes, as the transport takes them. */
interface Parked {
  message: WireMessage;
  route: { queue: string; priority: number; delayUntil: number | null; deduplicate: boolean };
}

function encodeParked(message: WireMessage, route: Route): string {
  const parked: Parked = { message, route: { queue: route.queue, priority: route.priority ?? 0, delayUntil: route.delayUntil ? route.delayUntil.getTime() : null, deduplicate: route.deduplicate === true } };
  return JSON.stringify(parked);
}

function decodeParked(json: string): { message: WireMessage; route: Route } {
  const { message, route } = JSON.parse(json) as Parked;
  return { message, route: { queue: route.queue, priority: route.priority, delayUntil: route.delayUntil === null ? null : new Date(route.delayUntil), ...(route.deduplicate ? { deduplicate: true } : {}) } };
}

/**
 * The references app.put() made. Each is stored before any call that takes it is parked (park awaits `sent`), so
 * one whose result is absent then has expired or been forgotten, and a call parked on it would wait for an outcome
 * that never comes: park fails such a call at once instead. (A task's reference cannot be told apart so: absent,
 * it may simply not have run yet.)
 */
const putObjects = new WeakSet<AsyncResult<unknown>>();

/** Marks `ref` as app.put()'s. */
export function putObject<T>(ref: AsyncResult<T>): AsyncResult<T> {
  putObjects.add(ref);
  return ref;
}

/** What parking and releasing need of the app (the app itself; a narrow view, so this module needs no Fennel). */
export interface RefsHost {
  readonly backend: ResultBackend;
  readonly transport: Transport;
}

/**
 * Parks a call whose arguments hold references, once every input's own message is in the broker (an input that
 * could not be sent fails this call's `sent` with its error). Sends it at once if every input is done; stores
 * its failure (or revocation) if one failed.
 */
export async function park(host: RefsHost, message: WireMessage, route: Route, inputs: ReadonlyArray<AsyncResult<unknown>>): Promise<void> {
  await Promise.all(inputs.map((input) => input.sent));
  const backend = host.backend;
  if (!backend.park) throw new ConfigError(`a call that takes results as arguments needs a result backend its workers share (sqlite://, redis://); ${backend.url} is not`);
  const id = message.headers['id'] as string;
  for (const input of inputs) {
    if (putObjects.has(input) && !(await backend.get(input.id))) {
      return storeOutcome(host, failedOutcome(id, message, `input ${input.id} (an object from put) is not in the result backend ${backend.url}: it expired (resultExpiresSec, or the ttlSec it was put with), or was forgotten`), false);
    }
  }
  const outcome: ParkOutcome = await backend.park(id, inputs.map((input) => input.id), encodeParked(message, route));
  if (outcome.ready) return host.transport.publish(message, route);
  if (outcome.failed) await storeOutcome(host, dependentOutcome(id, message, outcome.failed.input, outcome.failed.status, await backend.get(outcome.failed.input)), false);
}

/**
 * Stores an outcome and handles the calls it releases: what every store of a ready state goes through (a worker's,
 * and app.revoke()'s). `redelivered`: the outcome is stored again for a message delivered again.
 */
export async function storeOutcome(host: RefsHost, meta: TaskMeta, redelivered: boolean): Promise<void> {
  const backend = host.backend;
  if (!backend.settle) return backend.store(meta);
  const released = await backend.settle(meta);
  if (released.length > 0) await releaseCalls(host, released, redelivered);
}

/**
 * storeOutcome for a worker's delivery whose ack can join the store's transaction (Delivery.joinableAck): the ack is
 * taken with the store when the backend shares the store and nothing was released. True if it was taken; the
 * caller acks otherwise.
 */
export async function storeOutcomeAndAck(host: RefsHost, meta: TaskMeta, redelivered: boolean, ack: JoinableWrite | undefined): Promise<boolean> {
  const backend = host.backend;
  if (!ack || !backend.settleAndAck) {
    await storeOutcome(host, meta, redelivered);
    return false;
  }
  const { released, acked } = await backend.settleAndAck(meta, ack);
  if (released.length > 0) await releaseCalls(host, released, redelivered);
  return acked;
}

async function releaseCalls(host: RefsHost, released: readonly ReleasedCall[], redelivered: boolean): Promise<void> {
  const backend = host.backend;
  const transport = host.transport;
  for (const call of released) {
    // Released before: sent again only for a message delivered again (the first worker may have died before
    // sending it), only if the call has not started since, and only if no send was recorded (below).
    if (call.again && (!redelivered || (await backend.get(call.taskId)) || !(await claimSend(backend, call.taskId)))) continue;
    const { message, route } = decodeParked(call.callJson);
    if (call.status === States.SUCCESS) {
      // Parked with `deduplicate` where the broker has it (Fennel.send): a second send while the first waits is dropped.
      await transport.publish(message, route);
      // Recorded once it is in the broker, so that a repeat of this release does not send it again where the broker
      // cannot drop a duplicate (RabbitMQ): a copy sent twice ran twice there. Only a worker that dies between the
      // publish and this record leaves a repeat to send it again.
      if (!call.again) await claimSend(backend, call.taskId);
    } else {
      const input = await backend.get(call.input);
      await storeOutcome(host, dependentOutcome(call.taskId, message, call.input, call.status, input), redelivered);
    }
  }
}

/** Records that released call `taskId` was sent; true the first time (nothing was recorded before). */
async function claimSend(backend: ResultBackend, taskId: string): Promise<boolean> {
  return backend.claimOnce ? backend.claimOnce(`released-${taskId}`) : true;
}

/** The outcome of a call whose input failed (FAILURE, DependencyError naming the input and its error) or was revoked (REVOKED). */
function dependentOutcome(taskId: string, message: WireMessage, input: string, status: string, inputMeta: TaskMeta | undefined): TaskMeta {
  const name = typeof message.headers['task'] === 'string' ? message.headers['task'] : undefined;
  if (status === States.REVOKED) return { ...revokedMeta(taskId, `input ${input} was revoked`), ...(name ? { name } : {}) };
  const cause = inputMeta?.result as { exc_type?: unknown; exc_message?: unknown } | undefined;
  const text = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));
  const reason = cause && typeof cause.exc_type === 'string' ? `${cause.exc_type}: ${Array.isArray(cause.exc_message) ? cause.exc_message.map(text).join(', ') : text(cause.exc_message ?? '')}` : 'it failed';
  return failedOutcome(taskId, message, `input ${input} failed: ${reason}`);
}

/** A call's FAILURE with DependencyError, without running it. */
function failedOutcome(taskId: string, message: WireMessage, text: string): TaskMeta {
  const name = typeof message.headers['task'] === 'string' ? message.headers['task'] : undefined;
  return {
    status: States.FAILURE,
    result: exceptionInfo('DependencyError', text, 'fennel'),
    traceback: null,
    children: [],
    date_done: nowIso(),
    task_id: taskId,
    ...(name ? { name } : {}),
  };
}
