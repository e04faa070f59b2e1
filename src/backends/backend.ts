// The result backend contract: where outcomes are stored and how waiters learn of them.
// Engines wake waiters by push where they can (Redis pub/sub) and by polling where they cannot (SQLite).
// A backend is done when test/conformance/backend.suite.ts passes against it.

import type { TaskMeta } from '../protocol/result.ts';
import type { JoinableWrite } from '../clients/sqlite-file.ts';

/** How a wait for a task's outcome may end early. */
export interface WaitOptions {
  /** Resolve with undefined after this long. */
  timeoutMs?: number;
  /** The caller's signal: its abort rejects the wait with its reason. */
  signal?: AbortSignal;
  /**
   * The publish of the call waited for: its failure rejects the wait with its error. A promise, not a signal:
   * an AbortSignal with a listener survives V8's young-generation collections, and a producer that waits on
   * every call it sends made one per call.
   */
  failsWith?: Promise<unknown>;
}

export interface Revocation {
  taskId: string;
  /** Stop the task if it is running now (kill its pool slot), not only refuse it before it starts. */
  terminate: boolean;
  expiresAt: Date;
}

export interface ChordJoin {
  complete: boolean;
  /** This call completed the join (true for one call only). */
  first: boolean;
  /** When complete and asked for: every member's result, in index order (otherwise empty). */
  results: unknown[];
  /**
   * When complete and results were asked for: the first member recorded as failed, if any. Only Celery's workers
   * record failures in a join (Redis); Fennel's fail the chord at once instead (src/worker/workflow.ts).
   */
  failed?: ChordMemberFailure;
}

/** A chord member that a Celery worker recorded in the join as failed (Celery's `[1, id, state, exception]`). */
export interface ChordMemberFailure {
  taskId: string;
  /** FAILURE or REVOKED. */
  status: string;
  /** What Celery stored: its exception as `{exc_type, exc_message, exc_module}`. */
  result: unknown;
}

/** Who leads until when: one holder at a time (beat's leader). */
export interface Lease {
  holder: string;
  expiresAt: Date;
}

/**
 * A call parked until its inputs are ready (object references, src/app/refs.ts), handed back by `settle` when the
 * outcome of one of its inputs releases it.
 */
export interface ReleasedCall {
  /** The parked call's task id. */
  taskId: string;
  /** What was parked, as given to `park` (the message and its route, JSON). */
  callJson: string;
  /** The input whose outcome released it. */
  input: string;
  /**
   * That outcome's state: SUCCESS when every input is ready now (send the call); FAILURE or REVOKED when this input
   * failed or was revoked (the call must not run: it fails, or is revoked, in turn).
   */
  status: string;
  /**
   * Released before by this same input, whose outcome is being stored again (its message delivered again: the
   * worker may have died before it sent the call). The caller sends it again only where a duplicate is dropped.
   */
  again: boolean;
}

/** What `park` found: the inputs' outcomes as they stand. */
export interface ParkOutcome {
  /** Every input is ready and succeeded: nothing was parked, the caller sends the call now. */
  ready: boolean;
  /** An input has failed or been revoked already: nothing was parked, and the call must not run. */
  failed?: { input: string; status: string };
}

export interface ResultBackend {
  readonly url: string;
  /**
   * Stores a task's meta. A SUCCESS already stored is never overwritten (Celery's rule: a redelivered
   * duplicate must not replace the result of the run that completed).
   */
  store(meta: TaskMeta): Promise<void>;
  /**
   * Stores a meta kept for `ttlSec` seconds (0: until it is forgotten) instead of the results' expiry: app.put's
   * pinned objects. The same rules as `store` otherwise. Absent where results do not expire (memory://) or are
   * not kept (rpc://).
   */
  storeFor?(meta: TaskMeta, ttlSec: number): Promise<void>;
  // Ordering: stores called by one process are applied in the order they were called, whether or not the
  // caller awaited the earlier ones (engines queue them: a group commit, one connection's batches). The
  // worker relies on it: a task's STARTED is not awaited before its outcome is stored, and never lands after it.
  get(taskId: string): Promise<TaskMeta | undefined>;
  /**
   * Told by a producer just before it sends a call under `taskId`, an id it made (nothing is stored under it yet).
   * An engine that reads a waited key once before relying on pushed writes may skip that read for it (nats://).
   * Synchronous and cheap; never fails. Absent where it would change nothing.
   */
  expectResult?(taskId: string): void;
  /** Resolves with the meta once it is in a ready state, or with undefined when `timeoutMs` passes. */
  wait(taskId: string, options: WaitOptions): Promise<TaskMeta | undefined>;
  forget(taskId: string): Promise<void>;
  /**
   * Revocations: a set of task ids that every worker sharing this backend consults before it runs a task, kept
   * until `expiresAt` (so a worker restarted meanwhile still honours it). Absent on a backend that workers do
   * not share (rpc://): revoking then is an error that says so.
   */
  revoke?(revocation: Revocation): Promise<void>;
  /**
   * Calls `onRevoke` for every revocation in force now and then for each new one, from any process, until the
   * returned function is called. New ones arrive by push where the engine can, else within the poll interval.
   */
  watchRevocations?(onRevoke: (revocation: Revocation) => void): Promise<() => Promise<void>>;
  /**
   * Where the size of a chord lives in the store rather than in each member's message: records it before any
   * member is sent (the producer, or a worker starting a chord mid-workflow, awaits it first). Redis has it: Celery's
   * `.s` key, without which Celery's workers never complete a join. Left alone once the chord has completed
   * (`callbackId`: the callback's first task; a stored state of it means so too). Engines whose join takes the
   * size from the member (SQLite, memory) have no such method.
   */
  chordStart?(groupId: string, size: number, callbackId?: string): Promise<void>;
  /**
   * A chord's join: records member `index`'s result (JSON) for the group, atomically, and says whether all
   * `size` members are in now. `first` is true for exactly one call: the one that completed the join.
   * Recording the same index again (a redelivered member) changes nothing. Absent on rpc:// (no shared store).
   * `withResults` false: the results stay where they are (a callback sent by reference reads them itself).
   * `size` 0: the message does not say (a chord started by Celery); the engine then knows it from chordStart.
   * `taskId`: the member's task id, which Celery's layout records beside its result.
   */
  chordJoin?(groupId: string, index: number, size: number, resultJson: string, withResults?: boolean, taskId?: string): Promise<ChordJoin>;
  /**
   * The results a join holds, in index order, once all `size` are in; undefined if they are not (the join
   * expired with the results, or never completed); `{ failed }` if a Celery worker recorded a member as failed.
   * Kept as long as results are.
   */
  chordResults?(groupId: string, size: number): Promise<unknown[] | { failed: ChordMemberFailure } | undefined>;
  /**
   * Parks call `taskId` until every one of `inputs` (task ids) has an outcome, atomically against `settle`: an
   * input whose outcome is stored already does not count, so no release is ever missed. Kept as long as results
   * are. Parking the same call again (a producer that retried) changes nothing. Absent on rpc://.
   */
  park?(taskId: string, inputs: readonly string[], callJson: string): Promise<ParkOutcome>;
  /**
   * Stores an outcome as `store` does, and hands back the calls it releases: those parked on this task whose last
   * input it was (SUCCESS), or every call parked on it if it failed or was revoked. Each call is released once;
   * storing the same outcome again returns those it released before with `again`. Engines with `park` have it.
   */
  settle?(meta: TaskMeta): Promise<ReleasedCall[]>;
  /**
   * `settle`, with a delivery's ack in the same transaction when the ack is a write to this same store (sqlite://,
   * broker and results in one file) and the outcome releases no call (a released call is sent before the ack, so
   * that a crash in between sends it again). `acked` says whether the ack was taken; if not, the caller acks as
   * usual. One commit instead of two, and no moment where the outcome is stored but the message still held.
   */
  settleAndAck?(meta: TaskMeta, ack: JoinableWrite): Promise<{ released: ReleasedCall[]; acked: boolean }>;
  /** True the first time it is called with `key` (kept as long as results are), false after: a once-only marker. */
  claimOnce?(key: string): Promise<boolean>;
  /**
   * Takes the lease `name` for `holder` for `ttlMs` if nobody holds it, its holder's time has lapsed, or `holder`
   * holds it already (a renewal); otherwise changes nothing. Returns the lease as it stands after the call: the
   * caller leads if its holder is the caller. Atomic across every process sharing the store. Absent on rpc://.
   */
  acquireLease?(name: string, holder: string, ttlMs: number): Promise<Lease>;
  /** Gives the lease up if `holder` holds it, so another can take it at once. */
  releaseLease?(name: string, holder: string): Promise<void>;
  /** The lease as it stands, or undefined if nobody holds it (or its time has lapsed). */
  readLease?(name: string): Promise<Lease | undefined>;
  /** Stores a small durable record (JSON text) under `table` and `key`, replacing the one there (beat's state). */
  putRecord?(table: string, key: string, json: string): Promise<void>;
  /** Every record of `table`, by key. */
  readRecords?(table: string): Promise<Map<string, string>>;
  /** Deletes the record under `table` and `key`, if there is one. Backends with putRecord have it. */
  deleteRecord?(table: string, key: string): Promise<void>;
  /** Number of stored results per state, for `fennel status`. */
  countByState(): Promise<Record<string, number>>;
  close(): Promise<void>;
}
