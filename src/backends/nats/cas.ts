// Read-modify-write on one key of a JetStream bucket by compare-and-set: read the value and its revision, compute
// the new value, write it naming the revision read; the server refuses the write if another process wrote the key
// in between, and the change is computed again from a fresh read. Every atomic step of the NATS result backend (the
// SUCCESS guard of a store, a chord's join, a parked call's release, a lease) is one `change` of one key.
//
// Two things keep the round trips down:
//   - changes of one key asked for at once within this process are applied together, in the order asked, by one
//     write (200 members of a chord joined by one process race nobody but other processes);
//   - the value and revision this process last wrote are remembered, so the next change of the key writes at once
//     (a task's STARTED then its outcome: one write each, no read), and a key not remembered is first tried as
//     absent (a task's first state). A guess that was wrong costs one refused write and one read. A value written as
//     settled (an outcome) is not remembered: it is unlikely to change again here.
// A decision to write nothing is taken on a value read from the server, never on a remembered one (it may be old).

import { LRUCache } from 'lru-cache';
import { isWrongRevision, type KV } from '../../clients/nats/kv.ts';

/** What a change does with the value it is given: `next` to write (null deletes, undefined writes nothing), and what the caller gets. */
export interface Step<R> {
  next?: string | null;
  result: R;
  /**
   * The key is done changing in the normal course (a task's outcome): `next` is written but not remembered, and a
   * later change of the key reads it first. Remembered, every outcome stayed in the worker's memory until 10,000 later
   * writes pushed it out: 3.2 MB of a no-op worker's 30 MB live heap (a heap snapshot), up to 160 MB with results near
   * REMEMBERED_VALUE_CHARS.
   */
  settled?: boolean;
}

/** Computes a step from the current value (undefined: absent). Pure: it may run several times, on other values. */
export type Change<R> = (current: string | undefined) => Step<R>;

interface Pending {
  change: Change<unknown>;
  resolve: (result: unknown) => void;
  reject: (error: unknown) => void;
}

interface Known {
  value: string | undefined;
  revision: number;
  /** Read from the server for this attempt (not remembered from an earlier write). */
  fresh: boolean;
}

/** Attempts before a change gives up: contention from other processes only, as one process's changes are merged. */
const MAX_ATTEMPTS = 64;
/** Revisions remembered, the least recently used forgotten first. */
const REMEMBERED = 10_000;
/** Values longer than this are not remembered (a large result): the next change of their key reads it. */
const REMEMBERED_VALUE_CHARS = 16_384;

export class CasKeys {
  private readonly queues = new Map<string, Pending[]>();
  /** What this process last wrote, per key (an LRU: forgetting the oldest of a plain Map by `keys().next()` was a tenth of a worker's CPU, V8 walking the deleted slots at its front). */
  private readonly remembered = new LRUCache<string, { value: string | undefined; revision: number }>({ max: REMEMBERED });

  constructor(
    private readonly bucket: () => Promise<KV>,
    /** Names the bucket in errors. */
    private readonly what: string,
  ) {}

  /** Applies `change` to `key` atomically; resolves with its result once written (or once it chose to write nothing). */
  change<R>(key: string, change: Change<R>): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const queue = this.queues.get(key);
      const pending: Pending = { change, resolve: resolve as (result: unknown) => void, reject };
      if (queue) queue.push(pending);
      else {
        this.queues.set(key, [pending]);
        void this.drain(key);
      }
    });
  }

  /** Forgets what was remembered of `key` (it was deleted or purged outside `change`). */
  forget(key: string): void {
    this.remembered.delete(key);
  }

  private async drain(key: string): Promise<void> {
    // Changes that arrive while a batch is being written wait for the next batch: each batch is one write.
    for (let queue = this.queues.get(key)!; queue.length > 0; ) {
      const batch = queue.splice(0);
      try {
        const results = await this.apply(key, batch.map((p) => p.change));
        batch.forEach((p, i) => p.resolve(results[i]));
      } catch (error) {
        for (const p of batch) p.reject(error);
      }
    }
    this.queues.delete(key);
  }

  private async apply(key: string, changes: ReadonlyArray<Change<unknown>>): Promise<unknown[]> {
    const kv = await this.bucket();
    const last = this.remembered.get(key);
    let known: Known = last ? { value: last.value, revision: last.revision, fresh: false } : { value: undefined, revision: 0, fresh: false };
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      let value = known.value;
      let changed = false;
      let settled = false;
      const results = changes.map((change) => {
        const step = change(value);
        if (step.next !== undefined) {
          value = step.next ?? undefined;
          changed = true;
          settled = step.settled === true;
        }
        return step.result;
      });
      if (!changed || value === known.value) {
        if (known.fresh) return results;
        known = await this.read(kv, key);
        continue;
      }
      try {
        let revision: number;
        if (value === undefined) {
          await kv.delete(key, { previousSeq: known.revision });
          revision = 0; // a delete marker's revision is not returned: the next change reads
          this.forget(key);
        } else {
          revision = await kv.put(key, value, { previousSeq: known.revision });
          if (settled) this.forget(key);
          else this.remember(key, value, revision);
        }
        return results;
      } catch (error) {
        if (!isWrongRevision(error)) throw error;
        this.forget(key);
        // Several processes hammering one key: a short random pause spreads their next attempts.
        if (attempt > 3) await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, attempt * 2)));
        known = await this.read(kv, key);
      }
    }
    throw new Error(`${this.what}: key ${key} changed under ${MAX_ATTEMPTS} attempts in a row to update it; too many processes are writing it at once`);
  }

  private async read(kv: KV, key: string): Promise<Known> {
    const entry = await kv.get(key);
    if (!entry) return { value: undefined, revision: 0, fresh: true };
    // A deleted key keeps a marker whose revision the next write must name.
    return { value: entry.operation === 'PUT' ? entry.string() : undefined, revision: entry.revision, fresh: true };
  }

  private remember(key: string, value: string, revision: number): void {
    if (value.length > REMEMBERED_VALUE_CHARS) this.remembered.delete(key);
    else this.remembered.set(key, { value, revision });
  }
}
