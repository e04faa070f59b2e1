// The NATS result backend's keys and the small values it reads without decoding a whole meta. The layout, and
// why, is in src/backends/nats.ts's header and docs/nats.md. Every id and name is one key token (keyToken).

import { keyToken } from '../../clients/nats/kv.ts';

/** In `<prefix>_results`: expires with the results (the bucket's TTL is resultExpiresSec). */
export const resultKeys = {
  /** A task's meta (Celery's celery-task-meta-<id>) and the calls parked on it (withDependents), or a pinned object's marker. */
  meta: (taskId: string): string => `meta.${keyToken(taskId)}`,
  /** Every task's meta: what countByState reads. */
  allMetas: 'meta.>',
  /** A parked call: its message, the inputs it still waits for, who released it (ParkedCall). */
  parked: (taskId: string): string => `parked.${keyToken(taskId)}`,
  /** A chord's join: the indexes recorded so far (a JSON array). */
  chord: (groupId: string): string => `chord.${keyToken(groupId)}`,
  /** A chord member's result, as first recorded (JSON). */
  member: (groupId: string, index: number): string => `chord.${keyToken(groupId)}.${index}`,
  /** A once-only marker (claimOnce). */
  claim: (key: string): string => `claim.${keyToken(key)}`,
};

/** In `<prefix>_state`: kept until deleted (what must outlive results, or expires by a time of its own). */
export const stateKeys = {
  /** A revocation: `{terminate, expires_at}` (ms); skipped, and deleted, once past its time. */
  revoked: (taskId: string): string => `revoked.${keyToken(taskId)}`,
  allRevoked: 'revoked.>',
  /** A lease: `{holder, expires_at}` (ms). */
  lease: (name: string): string => `lease.${keyToken(name)}`,
  /** A record of a table: its JSON text as put. */
  record: (table: string, key: string): string => `record.${keyToken(table)}.${keyToken(key)}`,
  records: (table: string): string => `record.${keyToken(table)}.>`,
  /** A pinned object (storeFor): `<keep until, ms; 0: until forgotten>\n<meta>`. */
  pinned: (taskId: string): string => `pinned.${keyToken(taskId)}`,
  /** A pinned object's time (ms), apart from its value, so that a sweep reads small values only. */
  pinExpiry: (taskId: string): string => `pin-expiry.${keyToken(taskId)}`,
  allPinExpiries: 'pin-expiry.>',
};

/**
 * What `meta.<id>` holds for a pinned object instead of its meta: the object itself is in the state bucket, and
 * this marker, written after it, wakes the id's waiters (watches are on the results bucket) and names its state.
 */
const PINNED = 'fennel-pinned:';

export function pinnedMarker(status: string): string {
  return `${PINNED}${status}`;
}

export function isPinnedMarker(text: string): boolean {
  return text.startsWith(PINNED);
}

/**
 * The state of a stored meta (or marker) without decoding it: a meta is written with `status` first (encodeMeta,
 * Celery's layout), so the first `"status": "…"` is the meta's own, not one inside its result.
 */
export function statusOf(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  if (isPinnedMarker(text)) return text.slice(PINNED.length);
  return /"status"\s*:\s*"([A-Z_]+)"/.exec(text)?.[1];
}

/**
 * A stored meta and the ids of the calls parked on its task (refs.ts): `<meta>\n<["call id", …]>`. The meta is
 * encodeMeta's JSON, which holds no raw newline, so the first one ends it; without calls, the meta alone.
 */
export function withDependents(meta: string, dependents: readonly string[]): string {
  return dependents.length === 0 ? meta : `${meta}\n${JSON.stringify(dependents)}`;
}

/** The meta part of a stored value (withDependents), as written. */
export function metaPart(text: string): string {
  const newline = text.indexOf('\n');
  return newline < 0 ? text : text.slice(0, newline);
}

/** The ids of the calls parked on a stored value's task (withDependents). */
export function dependentsOf(text: string | undefined): string[] {
  const newline = text === undefined ? -1 : text.indexOf('\n');
  if (newline < 0) return [];
  const ids = JSON.parse(text!.slice(newline + 1)) as unknown;
  if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) throw new Error(`the calls parked on a result are not a JSON array of ids: ${text!.slice(newline + 1, newline + 200)}`);
  return ids;
}
