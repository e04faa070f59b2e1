// The canvas: signatures and the workflows built from them (chain, group, chord), in Celery's wire form so
// Python workers and clients understand them. A signature is a task call written down (`add.s(2, 3)`); as
// JSON it is Celery's signature dict `{task, args, kwargs, options, subtask_type, immutable}`.
//
// How each form travels (protocol v2):
//   chain   the first task's message carries the rest, reversed, in `embed.chain`; the worker that finishes
//           a task pops the next and sends it with the result prepended to its args (unless immutable).
//   group   each member is sent at once with the group id and its index (headers `group`, `group_index`).
//   chord   each header member also carries the callback in `embed.chord` (with `chord_size`); a member
//           that finishes records its result in the result backend's atomic join (one counter per group,
//           never a polling task) and the one that completes it sends the callback with the results, in order.
//           On Redis the join is Celery's own (`.j`, `.s`), shared with Celery's workers: the chord's size is
//           written there (chordStart) before any member is sent, as Celery's producer does.
// Every id is assigned before anything is sent ("freezing"), so the producer can hand back the results at
// once, and so a worker redelivered mid-workflow sends the same ids again (duplicates are then recognised).
// Messages carry only what the next step needs: a chord member carries the callback, not the other members.

import { randomUUID } from 'node:crypto';
import { ConfigError } from '../errors.ts';
import type { Fennel } from './fennel.ts';
import { AsyncResult, type GetOptions } from './result.ts';
import type { CallOptions } from './task.ts';

/** Celery's signature dict, as it appears in `embed.chain`, `embed.chord`, `embed.callbacks`. */
export interface SignatureDict {
  task: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  options: SignatureWireOptions;
  subtask_type: null | 'chain' | 'group' | 'chord';
  immutable: boolean;
  /** On a chord's callback: how many header results it waits for. */
  chord_size?: number | null;
}

/** The options of a signature dict that Fennel reads or writes (Celery's names). */
export interface SignatureWireOptions {
  task_id?: string;
  group_id?: string;
  group_index?: number;
  queue?: string;
  priority?: number;
  countdown?: number;
  /** Errbacks (Celery's link_error): signatures applied with the failed task's id when it fails. */
  link_error?: SignatureDict[];
  /** Fennel's: a chord callback this step belongs to (set on the last task of a chain inside a chord header). */
  chord?: SignatureDict;
  [other: string]: unknown;
}

/** What can be set on a signature with `.set()`. */
export interface SignatureOptions {
  queue?: string;
  priority?: number;
  countdownMs?: number;
  taskId?: string;
}

/** Anything that can be applied: a signature, a chain, a group or a chord. */
export interface CanvasNode<R> {
  /** Celery's signature dict for the whole workflow. */
  toJSON(): SignatureDict;
  /** Type only: what the node's result is (a group's: GroupOutput of its members'). */
  readonly __result?: R;
}

/** What applyAsync() hands back for a node whose result is R. */
export type ResultHandle<R> = R extends GroupOutput<infer T> ? GroupResult<T> : AsyncResult<R>;

/** The type-level marker of a group's output (an array of member results). */
export interface GroupOutput<T> {
  readonly __group: T[];
}

type Binder = () => Fennel;

/** A task call written down. `add.s(3)` in a chain becomes `add(previous, 3)`; `add.si(2, 3)` ignores the previous result. */
export class Signature<R = unknown> implements CanvasNode<R> {
  declare readonly __result?: R;

  constructor(
    readonly app: Binder,
    readonly task: string,
    readonly args: readonly unknown[] = [],
    readonly kwargs: Readonly<Record<string, unknown>> = {},
    readonly options: Readonly<SignatureWireOptions> = {},
    readonly immutable = false,
  ) {}

  /** A copy with these options: queue, priority, countdownMs, taskId. */
  set(options: SignatureOptions): Signature<R> {
    const wire: SignatureWireOptions = { ...this.options };
    if (options.queue !== undefined) wire.queue = options.queue;
    if (options.priority !== undefined) wire.priority = options.priority;
    if (options.countdownMs !== undefined) wire.countdown = options.countdownMs / 1000;
    if (options.taskId !== undefined) wire.task_id = options.taskId;
    return new Signature<R>(this.app, this.task, this.args, this.kwargs, wire, this.immutable);
  }

  /** A copy that runs `errback` (applied with this task's id) if this task fails. */
  onError(errback: Signature): Signature<R> {
    return new Signature<R>(this.app, this.task, this.args, this.kwargs, { ...this.options, link_error: [...(this.options.link_error ?? []), errback.toJSON()] }, this.immutable);
  }

  toJSON(): SignatureDict {
    return { task: this.task, args: [...this.args], kwargs: { ...this.kwargs }, options: { ...this.options }, subtask_type: null, immutable: this.immutable };
  }

  applyAsync(): ResultHandle<R> {
    return applyWorkflow(this.app(), this.toJSON()) as never;
  }
}

/** Runs each step with the previous one's result; the chain's result is the last step's. */
export class Chain<R = unknown> implements CanvasNode<R> {
  declare readonly __result?: R;

  constructor(
    readonly app: Binder,
    readonly steps: ReadonlyArray<CanvasNode<unknown>>,
  ) {}

  toJSON(): SignatureDict {
    return { task: 'celery.chain', args: [], kwargs: { tasks: this.steps.map((s) => s.toJSON()) }, options: {}, subtask_type: 'chain', immutable: false };
  }

  applyAsync(): ResultHandle<R> {
    return applyWorkflow(this.app(), this.toJSON()) as never;
  }
}

/** Runs its members in parallel; the result is every member's, in order. */
export class Group<T = unknown> implements CanvasNode<GroupOutput<T>> {
  declare readonly __result?: GroupOutput<T>;

  constructor(
    readonly app: Binder,
    readonly members: ReadonlyArray<CanvasNode<unknown>>,
  ) {}

  toJSON(): SignatureDict {
    return { task: 'celery.group', args: [], kwargs: { tasks: this.members.map((m) => m.toJSON()) }, options: {}, subtask_type: 'group', immutable: false };
  }

  applyAsync(): GroupResult<T> {
    return applyWorkflow(this.app(), this.toJSON()) as GroupResult<T>;
  }
}

/** Runs the header in parallel, then the callback once, with the header's results in order as its first argument. */
export class Chord<R = unknown> implements CanvasNode<R> {
  declare readonly __result?: R;

  constructor(
    readonly app: Binder,
    readonly header: ReadonlyArray<CanvasNode<unknown>>,
    readonly body: CanvasNode<R>,
  ) {}

  toJSON(): SignatureDict {
    return { task: 'celery.chord', args: [], kwargs: { header: this.header.map((h) => h.toJSON()), body: this.body.toJSON() }, options: {}, subtask_type: 'chord', immutable: false };
  }

  applyAsync(): ResultHandle<R> {
    return applyWorkflow(this.app(), this.toJSON()) as never;
  }
}

function binderOf(nodes: ReadonlyArray<CanvasNode<unknown>>): Binder {
  for (const node of nodes) {
    const app = (node as unknown as { app?: Binder }).app;
    if (app) return app;
  }
  throw new ConfigError('a workflow needs at least one signature made by a task (task.s(), task.si())');
}

type Last<T extends readonly unknown[]> = T extends readonly [...unknown[], infer L] ? L : unknown;
type ResultOf<N> = N extends CanvasNode<infer R> ? R : unknown;

/** `chain(a.s(1), b.s(), c.s())`: each result feeds the next. */
export function chain<N extends ReadonlyArray<CanvasNode<unknown>>>(...steps: N): Chain<ResultOf<Last<N>>> {
  if (steps.length === 0) throw new ConfigError('chain() needs at least one step');
  return new Chain(binderOf(steps), steps);
}

/** `group([a.s(1), a.s(2)])`: in parallel; results in order. */
export function group<T>(members: ReadonlyArray<CanvasNode<T>>): Group<T> {
  if (members.length === 0) throw new ConfigError('group() needs at least one member');
  return new Group<T>(binderOf(members), members);
}

/** `chord([a.s(1), a.s(2)], sum.s())`: the callback runs once, after every member, with their results in order. */
export function chord<R>(header: ReadonlyArray<CanvasNode<unknown>> | Group<unknown>, body: CanvasNode<R>): Chord<R> {
  const members = header instanceof Group ? header.members : header;
  if (members.length === 0) throw new ConfigError('chord() needs at least one header member (Celery calls an empty header an error too)');
  return new Chord<R>(binderOf([...members, body]), members, body);
}

/** The results of a group: one AsyncResult per member, in order. */
export class GroupResult<T = unknown> implements PromiseLike<T[]> {
  constructor(
    readonly id: string,
    readonly results: ReadonlyArray<AsyncResult<T>>,
  ) {}

  /** Every member's result, in order; rejects with the first member failure (RemoteTaskError). */
  get(options: GetOptions = {}): Promise<T[]> {
    return Promise.all(this.results.map((r) => r.get(options)));
  }

  /** Each member's outcome, failures included, without throwing. */
  settled(options: GetOptions = {}): Promise<Array<PromiseSettledResult<T>>> {
    return Promise.allSettled(this.results.map((r) => r.get(options)));
  }

  /** How many members have finished (succeeded, failed or been revoked). */
  async completedCount(): Promise<number> {
    const ready = await Promise.all(this.results.map((r) => r.ready()));
    return ready.filter(Boolean).length;
  }

  async ready(): Promise<boolean> {
    return (await this.completedCount()) === this.results.length;
  }

  /** Finished members over all members, 0 to 1. */
  async progress(): Promise<number> {
    return (await this.completedCount()) / this.results.length;
  }

  then<R1 = T[], R2 = never>(onFulfilled?: ((value: T[]) => R1 | PromiseLike<R1>) | null, onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null): PromiseLike<R1 | R2> {
    return this.get().then(onFulfilled, onRejected);
  }
}

// -------------------------------------------------------------------------------------------------------
// Applying a workflow: used by the producer (applyAsync) and by workers continuing one.

/** Assigns every id a workflow needs (task ids, group ids), in place, and returns the dict. */
// `newId` makes the ids: random by default; beat derives them from the schedule and due time, so that a fire
// sent again (by a new leader) is the same workflow, with the same ids, in the same order.
export function freeze(dict: SignatureDict, newId: () => string = randomUUID): SignatureDict {
  switch (dict.subtask_type) {
    case null:
      dict.options.task_id ??= newId();
      break;
    case 'chain':
      for (const step of chainSteps(dict)) freeze(step, newId);
      break;
    case 'group':
      dict.options.group_id ??= newId();
      for (const member of groupMembers(dict)) freeze(member, newId);
      break;
    case 'chord':
      dict.options.group_id ??= newId();
      for (const member of chordParts(dict).header) freeze(member, newId);
      freeze(chordParts(dict).body, newId);
      break;
  }
  return dict;
}

function chainSteps(dict: SignatureDict): SignatureDict[] {
  return (dict.kwargs['tasks'] as SignatureDict[] | undefined) ?? [];
}

function groupMembers(dict: SignatureDict): SignatureDict[] {
  return (dict.kwargs['tasks'] as SignatureDict[] | undefined) ?? [];
}

function chordParts(dict: SignatureDict): { header: SignatureDict[]; body: SignatureDict } {
  return { header: (dict.kwargs['header'] as SignatureDict[] | undefined) ?? [], body: dict.kwargs['body'] as SignatureDict };
}

/** The ids that stand for a frozen workflow's outcome: its last task, or a group's members. */
export function outcomeIds(dict: SignatureDict): { taskId: string } | { groupId: string; members: string[] } {
  switch (dict.subtask_type) {
    case null:
      return { taskId: dict.options.task_id! };
    case 'chain': {
      const steps = normaliseChain(chainSteps(dict));
      return outcomeIds(steps[steps.length - 1]!);
    }
    case 'group':
      return { groupId: dict.options.group_id!, members: groupMembers(dict).map((m) => lastTaskId(m)) };
    case 'chord':
      return outcomeIds(chordParts(dict).body);
  }
}

/** The id of the task whose result stands for this node (a group member that is itself a group: its last member's). */
function lastTaskId(dict: SignatureDict): string {
  const ids = outcomeIds(dict);
  return 'taskId' in ids ? ids.taskId : ids.members[ids.members.length - 1]!;
}

/**
 * A chain's steps with each group that is followed by another step turned into a chord of the two (Celery
 * does the same: the step after a group needs all its results), and nested chains flattened.
 */
export function normaliseChain(steps: SignatureDict[]): SignatureDict[] {
  const flat = steps.flatMap((s) => (s.subtask_type === 'chain' ? normaliseChain(chainSteps(s)) : [s]));
  const out: SignatureDict[] = [];
  for (let i = 0; i < flat.length; i++) {
    const step = flat[i]!;
    const next = flat[i + 1];
    if (step.subtask_type === 'group' && next) {
      out.push({ task: 'celery.chord', args: [], kwargs: { header: groupMembers(step), body: next }, options: step.options.group_id ? { group_id: step.options.group_id } : {}, subtask_type: 'chord', immutable: false });
      i++;
    } else out.push(step);
  }
  return out;
}

/** Where a step being applied belongs: the previous result, the rest of its chain, its group and chord. */
export interface StepContext {
  /** Prepended to a mutable step's args (the previous step's result). */
  prepend?: unknown[] | undefined;
  /** The steps still to run after this one, in order. */
  rest?: SignatureDict[] | undefined;
  group?: { id: string; index: number } | undefined;
  /** The chord callback this step (or the last task it leads to) reports to. */
  chord?: SignatureDict | undefined;
  parentId?: string | null | undefined;
  rootId?: string | null | undefined;
  /** Publish with deduplicate (a chord callback: sent once however many members try). */
  once?: boolean | undefined;
  /** Options for the workflow's first messages only (those sent now, not by workers later): beat's fires. */
  firstCall?: Pick<CallOptions, 'deduplicate' | 'expires'> | undefined;
}

/**
 * Sends a frozen workflow with `firstCall` on each message sent now (a chain's first step, a group's members, a
 * chord's header); resolves once all are in the broker. Beat's fires: deduplicated, expiring.
 */
export function sendFrozen(app: Fennel, dict: SignatureDict, firstCall: StepContext['firstCall']): Promise<void> {
  const sends: Array<Promise<void>> = [];
  applyStep(app, dict, { firstCall }, sends);
  return Promise.all(sends).then(() => {});
}

/** Applies a workflow dict (freezing it first) and returns the handle on its outcome. */
export function applyWorkflow(app: Fennel, dict: SignatureDict): AsyncResult<unknown> | GroupResult<unknown> {
  freeze(dict);
  const sends: Array<Promise<void>> = [];
  applyStep(app, dict, {}, sends);
  // `sent` resolves once every first message of the workflow is in the broker.
  const sent = Promise.all(sends).then(() => {});
  sent.catch(() => {});
  const handle = (id: string): AsyncResult<unknown> => new AsyncResult(id, () => app.backend, sent, undefined, (taskId, options) => app.revoke(taskId, options));
  const ids = outcomeIds(dict);
  if ('taskId' in ids) return handle(ids.taskId);
  return new GroupResult(ids.groupId, ids.members.map(handle));
}

/**
 * Sends one step of a workflow (recursively for groups, chords and chains); each publish is pushed onto
 * `sends`, so the caller can wait until all are in the broker (a worker does, before it acknowledges).
 */
export function applyStep(app: Fennel, dict: SignatureDict, ctx: StepContext, sends: Array<Promise<void>>): void {
  switch (dict.subtask_type) {
    case null:
      return sendTask(app, dict, ctx, sends);
    case 'chain': {
      const [first, ...rest] = normaliseChain(chainSteps(dict));
      // A chain inside a group or chord header: its last step carries the group and chord it reports to.
      return applyStep(app, first!, { ...ctx, rest: [...rest, ...(ctx.rest ?? [])] }, sends);
    }
    case 'group': {
      const members = groupMembers(dict);
      const groupId = dict.options.group_id ?? randomUUID();
      members.forEach((member, index) => applyStep(app, member, { prepend: ctx.prepend, group: { id: groupId, index }, ...(ctx.chord ? { chord: ctx.chord } : {}), parentId: ctx.parentId, rootId: ctx.rootId, firstCall: ctx.firstCall }, sends));
      // A group followed by more steps is a chord (normaliseChain); a trailing group ends its chain.
      return;
    }
    case 'chord': {
      const { header, body } = chordParts(dict);
      // The rest of an enclosing chain runs after the callback: the callback leads it. A chord that is itself a
      // member of a group or of an outer chord's header reports there through the last step after its callback.
      const steps = [body, ...(ctx.rest ?? [])];
      if (ctx.group || ctx.chord) {
        const last = steps[steps.length - 1]!;
        if (last.subtask_type !== null) throw new ConfigError(`a chord inside a group or a chord's header must end in a task, not a ${last.subtask_type} (${last.task}): its last step reports to the enclosing one`);
        steps[steps.length - 1] = withBranch(last, ctx);
      }
      const callback: SignatureDict = steps.length > 1 ? { task: 'celery.chain', args: [], kwargs: { tasks: steps }, options: {}, subtask_type: 'chain', immutable: false } : steps[0]!;
      const withSize = { ...callback, chord_size: header.length };
      const groupId = dict.options.group_id ?? randomUUID();
      const sendHeader = (into: Array<Promise<void>>): void =>
        header.forEach((member, index) => applyStep(app, member, { prepend: ctx.prepend, group: { id: groupId, index }, chord: withSize, parentId: ctx.parentId, rootId: ctx.rootId, firstCall: ctx.firstCall }, into));
      const backend = app.backend;
      if (!backend.chordStart) return sendHeader(sends);
      // The join keeps the size in the backend (Redis: Celery's `.s`, which Celery's workers wait for): it is
      // written before any member is sent, so no member, whichever worker runs it, can join without it.
      const members: Array<Promise<void>> = [];
      sends.push(
        backend.chordStart(groupId, header.length, firstTaskId(callback)).then(() => {
          sendHeader(members);
          return Promise.all(members).then(() => {});
        }),
      );
      return;
    }
  }
}

function sendTask(app: Fennel, dict: SignatureDict, ctx: StepContext, sends: Array<Promise<void>>): void {
  const { options } = dict;
  const args = dict.immutable || !ctx.prepend ? dict.args : [...ctx.prepend, ...dict.args];
  const rest = ctx.rest ?? [];
  const last = rest.length === 0;
  // The group and chord go with the task that finishes this branch: the last of its chain.
  const group = last ? (ctx.group ?? (options.group_id !== undefined && options.group_index !== undefined ? { id: options.group_id, index: options.group_index } : undefined)) : undefined;
  const chordBody = last ? (ctx.chord ?? options.chord) : undefined;
  const restDicts = rest.map((step, i) => (i === rest.length - 1 && (ctx.group || ctx.chord) ? withBranch(step, ctx) : step));
  const call: CallOptions = { taskId: options.task_id! };
  if (options.queue !== undefined) call.queue = options.queue;
  if (options.priority !== undefined) call.priority = options.priority;
  if (options.countdown !== undefined && options.countdown > 0) call.countdown = options.countdown;
  if (Object.keys(dict.kwargs).length) call.kwargs = dict.kwargs;
  if (ctx.once && app.transport.capabilities.deduplication) call.deduplicate = true;
  if (ctx.firstCall) Object.assign(call, ctx.firstCall);
  const result = app.sendWorkflowStep(dict.task, args, call, {
    embed: {
      // Celery's order: the next step is the last element.
      chain: restDicts.length ? [...restDicts].reverse() : null,
      errbacks: options.link_error?.length ? options.link_error : null,
      chord: chordBody ?? null,
    },
    ...(group ? { group: group.id, groupIndex: group.index } : {}),
    ...(ctx.parentId ? { parentId: ctx.parentId } : {}),
    ...(ctx.rootId ? { rootId: ctx.rootId } : {}),
  });
  sends.push(result.sent);
}

/** Marks the last step of a chain that is a group member or chord part, so the worker reaching it reports there. */
function withBranch(step: SignatureDict, ctx: StepContext): SignatureDict {
  const options: SignatureWireOptions = { ...step.options };
  if (ctx.group) {
    options.group_id = ctx.group.id;
    options.group_index = ctx.group.index;
  }
  if (ctx.chord) options.chord = ctx.chord;
  return { ...step, options };
}

/** The task the canvas registers in every app for `task.chunks()`: runs one task over many argument lists. */
export const STARMAP_TASK = 'fennel.starmap';

/** The id of the first task a workflow sends (whose stored state shows the workflow has started). */
export function firstTaskId(dict: SignatureDict): string | undefined {
  switch (dict.subtask_type) {
    case null:
      return dict.options.task_id;
    case 'chain':
      return firstTaskId(normaliseChain(chainSteps(dict))[0]!);
    case 'group': {
      const first = groupMembers(dict)[0];
      return first && firstTaskId(first);
    }
    case 'chord': {
      const first = chordParts(dict).header[0];
      return first && firstTaskId(first);
    }
  }
}

/** The tasks a result applied to this workflow is prepended to: a task (unless immutable), a chain's first step, a group's members, a chord's header. */
export function tasksGivenResult(dict: SignatureDict): string[] {
  switch (dict.subtask_type) {
    case null:
      return dict.immutable ? [] : [dict.task];
    case 'chain': {
      const first = normaliseChain(chainSteps(dict))[0];
      return first ? tasksGivenResult(first) : [];
    }
    case 'group':
      return groupMembers(dict).flatMap(tasksGivenResult);
    case 'chord':
      return chordParts(dict).header.flatMap(tasksGivenResult);
  }
}

/** Every task id whose result stands for this workflow's outcome (a chain's last, a group's members, a chord's body). */
export function resultTaskIds(dict: SignatureDict): string[] {
  const ids = outcomeIds(dict);
  return 'taskId' in ids ? [ids.taskId] : ids.members;
}
