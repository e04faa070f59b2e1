// memory:// — an in-process result backend for unit tests; waiters are woken directly on store.

import type { TaskMeta } from '../protocol/result.ts';
import { isReady, States } from '../protocol/states.ts';
import { decodeJson } from '../protocol/json.ts';
import type { ChordJoin, Lease, ParkOutcome, ReleasedCall, ResultBackend, Revocation, WaitOptions } from './backend.ts';
import { Waiters } from './waiters.ts';

export class MemoryBackend implements ResultBackend {
  private readonly metas = new Map<string, TaskMeta>();
  private readonly waiters = new Waiters();

  constructor(readonly url = 'memory://') {}

  async store(meta: TaskMeta): Promise<void> {
    if (this.metas.get(meta.task_id)?.status === States.SUCCESS) return;
    this.metas.set(meta.task_id, meta);
    if (isReady(meta.status)) this.waiters.wake(meta.task_id, meta);
  }

  /** Calls parked on their inputs, by task id; `releasedBy` once an input's outcome released it. */
  private readonly parked = new Map<string, { callJson: string; waiting: Set<string>; releasedBy?: string; status?: string }>();
  /** The calls parked on each input, by the input's task id (kept, so an outcome stored again finds them). */
  private readonly dependents = new Map<string, Set<string>>();

  async park(taskId: string, inputs: readonly string[], callJson: string): Promise<ParkOutcome> {
    if (this.parked.has(taskId)) return { ready: false };
    const waiting = new Set<string>();
    for (const input of inputs) {
      const status = this.metas.get(input)?.status;
      if (status === undefined || !isReady(status)) waiting.add(input);
      else if (status !== States.SUCCESS) return { ready: false, failed: { input, status } };
    }
    if (waiting.size === 0) return { ready: true };
    this.parked.set(taskId, { callJson, waiting });
    for (const input of waiting) {
      let set = this.dependents.get(input);
      if (!set) this.dependents.set(input, (set = new Set()));
      set.add(taskId);
    }
    return { ready: false };
  }

  async settle(meta: TaskMeta): Promise<ReleasedCall[]> {
    await this.store(meta);
    // The outcome that stands: a SUCCESS stored before is kept over this one.
    const status = this.metas.get(meta.task_id)!.status;
    if (!isReady(status)) return [];
    const input = meta.task_id;
    const released: ReleasedCall[] = [];
    for (const taskId of this.dependents.get(input) ?? []) {
      const call = this.parked.get(taskId);
      if (!call) continue;
      if (call.releasedBy !== undefined) {
        if (call.releasedBy === input) released.push({ taskId, callJson: call.callJson, input, status: call.status!, again: true });
        continue;
      }
      call.waiting.delete(input);
      if (status === States.SUCCESS && call.waiting.size > 0) continue;
      call.releasedBy = input;
      call.status = status;
      released.push({ taskId, callJson: call.callJson, input, status, again: false });
    }
    return released;
  }

  async get(taskId: string): Promise<TaskMeta | undefined> {
    return this.metas.get(taskId);
  }

  wait(taskId: string, options: WaitOptions): Promise<TaskMeta | undefined> {
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    const current = this.metas.get(taskId);
    if (current && isReady(current.status)) return Promise.resolve(current);
    return this.waiters.add(taskId, options);
  }

  private readonly revocations = new Map<string, Revocation>();
  private readonly revocationWatchers = new Set<(revocation: Revocation) => void>();

  async revoke(revocation: Revocation): Promise<void> {
    this.revocations.set(revocation.taskId, revocation);
    for (const watcher of this.revocationWatchers) watcher(revocation);
  }

  async watchRevocations(onRevoke: (revocation: Revocation) => void): Promise<() => Promise<void>> {
    const now = Date.now();
    for (const r of this.revocations.values()) if (r.expiresAt.getTime() > now) onRevoke(r);
    this.revocationWatchers.add(onRevoke);
    return async () => void this.revocationWatchers.delete(onRevoke);
  }

  private readonly joins = new Map<string, { parts: Map<number, string>; fired: boolean }>();
  private readonly claims = new Set<string>();

  async chordJoin(groupId: string, index: number, size: number, resultJson: string, withResults = true): Promise<ChordJoin> {
    let join = this.joins.get(groupId);
    if (!join) this.joins.set(groupId, (join = { parts: new Map(), fired: false }));
    // A member recorded again (its message redelivered) keeps the result stored first, as on sqlite and redis.
    if (!join.parts.has(index)) join.parts.set(index, resultJson);
    if (join.parts.size < size) return { complete: false, first: false, results: [] };
    const first = !join.fired;
    join.fired = true;
    return { complete: true, first, results: withResults ? this.partsInOrder(join.parts) : [] };
  }

  async chordResults(groupId: string, size: number): Promise<unknown[] | undefined> {
    const parts = this.joins.get(groupId)?.parts;
    return parts && parts.size >= size ? this.partsInOrder(parts) : undefined;
  }

  private partsInOrder(parts: Map<number, string>): unknown[] {
    return [...parts.entries()].sort((a, b) => a[0] - b[0]).map(([, json]) => decodeJson(json));
  }

  async claimOnce(key: string): Promise<boolean> {
    if (this.claims.has(key)) return false;
    this.claims.add(key);
    return true;
  }

  private readonly leases = new Map<string, { holder: string; expiresAt: number }>();
  private readonly records = new Map<string, Map<string, string>>();

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease> {
    const now = Date.now();
    const current = this.leases.get(name);
    if (!current || current.expiresAt <= now || current.holder === holder) this.leases.set(name, { holder, expiresAt: now + ttlMs });
    const lease = this.leases.get(name)!;
    return { holder: lease.holder, expiresAt: new Date(lease.expiresAt) };
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    if (this.leases.get(name)?.holder === holder) this.leases.delete(name);
  }

  async readLease(name: string): Promise<Lease | undefined> {
    const lease = this.leases.get(name);
    return lease && lease.expiresAt > Date.now() ? { holder: lease.holder, expiresAt: new Date(lease.expiresAt) } : undefined;
  }

  async putRecord(table: string, key: string, json: string): Promise<void> {
    let rows = this.records.get(table);
    if (!rows) this.records.set(table, (rows = new Map<string, string>()));
    rows.set(key, json);
  }

  async deleteRecord(table: string, key: string): Promise<void> {
    this.records.get(table)?.delete(key);
  }

  async readRecords(table: string): Promise<Map<string, string>> {
    const rows = this.records.get(table);
    return rows ? new Map(rows) : new Map<string, string>();
  }

  async forget(taskId: string): Promise<void> {
    this.metas.delete(taskId);
  }

  async countByState(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const meta of this.metas.values()) counts[meta.status] = (counts[meta.status] ?? 0) + 1;
    return counts;
  }

  async close(): Promise<void> {
    this.waiters.wakeAll();
  }
}
