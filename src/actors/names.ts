// The name server (Pyro's, as a table rather than a process): where each actor lives, by id and by name, with its
// metadata, kept in the result backend's records (SQLite table fennel_records, Redis hashes), and the live actor
// hosts with what they can host. A name is held by a lease in the same store, so two creates of one name at once
// cannot both win. Which host runs an actor now is the holder of the actor's lease (`fennel.actor.<id>`), renewed
// by that host: an entry whose lease has lapsed is `available: false` until a host takes it over.

import type { ResultBackend } from '../backends/backend.ts';
import { ConfigError } from '../errors.ts';

export const ENTRIES = 'fennel.actors';
export const HOSTS = 'fennel.actor.hosts';
export const SNAPSHOTS = 'fennel.actor.snapshots';

/** Where the actor's calls go: a queue of its own, consumed by its host only (one at a time, in order). */
export { actorQueue } from '../protocol/queues.ts';

/** How long a host's lease on an actor lasts unrenewed: the time before another host may take it over. */
export const ACTOR_LEASE_MS = 10_000;

/** The lease its host holds while it runs it. */
export function actorLease(id: string): string {
  return `fennel.actor.${id}`;
}

/** The lease that holds a name for an actor id. */
export function nameLease(name: string): string {
  return `fennel.name.${name}`;
}

export type InstanceMode = 'single' | 'session' | 'percall';

/** One actor as the name server keeps it. */
export interface ActorEntry {
  id: string;
  /** Its name (`create({ name })`), or its id when it was created without one. */
  name: string;
  /** The name given to app.actor(): what a host constructs. */
  className: string;
  mode: InstanceMode;
  /** The constructor's arguments. */
  args: unknown[];
  meta: Record<string, string>;
  /** Constructed again elsewhere when its host dies (up to maxRestarts), or failed (ActorDiedError). */
  restart: boolean;
  maxRestarts: number;
  restarts: number;
  maxConcurrency: number;
  /** The host it was placed on or last taken over by. */
  host: string;
  /** `dead`: its host died and it may not restart; calls fail with ActorDiedError. */
  state: 'alive' | 'dead';
  createdAt: string;
  /** When a host first constructed it: a takeover before that is its placement, not a restart. */
  hostedAt?: string;
}

/** An entry as listed: with whether a live host runs it now, and where. */
export interface NameListing extends ActorEntry {
  available: boolean;
}

/** A live actor host, as it announces itself on every heartbeat. */
export interface HostRecord {
  node: string;
  /** ms since the epoch: its last heartbeat. */
  at: number;
  /** The actor classes it can construct. */
  classes: string[];
  /** How many actors it runs now, and calls it has run. */
  actors: number;
  calls: number;
  /** Calls each of its actors has run here, by actor id (since this host took it). */
  callsByActor: Record<string, number>;
}

/** A host whose last heartbeat is older than this is not placed on. */
export const HOST_STALE_MS = 15_000;

export class Names {
  constructor(private readonly backendFn: () => ResultBackend) {}

  private store(): Required<Pick<ResultBackend, 'putRecord' | 'readRecords' | 'deleteRecord' | 'readLease' | 'acquireLease'>> & ResultBackend {
    const backend = this.backendFn();
    if (!backend.putRecord || !backend.readRecords || !backend.deleteRecord || !backend.readLease || !backend.acquireLease) {
      throw new ConfigError(`actors need a result backend every process shares (sqlite://, redis://); ${backend.url} is not`);
    }
    return backend as Required<Pick<ResultBackend, 'putRecord' | 'readRecords' | 'deleteRecord' | 'readLease' | 'acquireLease'>> & ResultBackend;
  }

  async entries(): Promise<ActorEntry[]> {
    const records = await this.store().readRecords(ENTRIES);
    return [...records.values()].map((json) => JSON.parse(json) as ActorEntry);
  }

  /** The entry of actor `id` (entries are keyed by id: one record read, not every entry parsed). */
  async byId(id: string): Promise<ActorEntry | undefined> {
    const json = (await this.store().readRecords(ENTRIES)).get(id);
    return json === undefined ? undefined : (JSON.parse(json) as ActorEntry);
  }

  /** The entry holding `name` (an entry whose name lease it no longer holds does not count). */
  async lookup(name: string): Promise<ActorEntry | undefined> {
    const holder = (await this.store().readLease(nameLease(name)))?.holder;
    return holder === undefined ? undefined : this.byId(holder);
  }

  /**
   * Pyro's `remove(name)`: forgets the actor holding `name` (its entry, snapshot and name; true if there was one).
   * It does not stop it: proxies made before still reach it until `destroy()`, but lookups do not find it, and it is
   * not restarted if its host dies. For a dead actor's name, say, or one whose host will not come back.
   */
  async unregister(name: string): Promise<boolean> {
    const entry = await this.lookup(name);
    if (!entry) return false;
    await this.remove(entry);
    return true;
  }

  async put(entry: ActorEntry): Promise<void> {
    await this.store().putRecord(ENTRIES, entry.id, JSON.stringify(entry));
  }

  async remove(entry: ActorEntry): Promise<void> {
    const store = this.store();
    await store.deleteRecord(ENTRIES, entry.id);
    await store.deleteRecord(SNAPSHOTS, entry.id);
    if (entry.name !== entry.id) await store.releaseLease?.(nameLease(entry.name), entry.id);
  }

  /**
   * Takes `name` for actor `id`: true if it was free, or held by an entry that no longer exists or is dead (that
   * one is removed). Names are held for ten years (a lease that is never renewed), until destroy releases them.
   */
  async claim(name: string, id: string): Promise<boolean> {
    const store = this.store();
    const lease = nameLease(name);
    const TEN_YEARS_MS = 10 * 365 * 86_400_000;
    const got = await store.acquireLease(lease, id, TEN_YEARS_MS);
    if (got.holder === id) return true;
    const holder = await this.byId(got.holder);
    if (holder && holder.state !== 'dead') return false;
    if (holder) await this.remove(holder);
    else await store.releaseLease?.(lease, got.holder);
    return (await store.acquireLease(lease, id, TEN_YEARS_MS)).holder === id;
  }

  /** Pyro's `list(prefix, metadata_all)`: the entries whose name starts with `prefix` and whose meta has every pair of `meta`. */
  async list(filter: { prefix?: string; meta?: Record<string, string> } = {}): Promise<NameListing[]> {
    const store = this.store();
    const entries = (await this.entries()).filter((entry) => (filter.prefix === undefined || entry.name.startsWith(filter.prefix)) && Object.entries(filter.meta ?? {}).every(([k, v]) => entry.meta[k] === v));
    const leases = await Promise.all(entries.map((entry) => store.readLease(actorLease(entry.id))));
    return entries
      .map((entry, i) => ({ ...entry, host: leases[i]?.holder ?? entry.host, available: entry.state === 'alive' && leases[i] !== undefined }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async hosts(): Promise<HostRecord[]> {
    const records = await this.store().readRecords(HOSTS);
    const now = Date.now();
    return [...records.values()].map((json) => JSON.parse(json) as HostRecord).filter((host) => now - host.at < HOST_STALE_MS);
  }

  async announceHost(record: HostRecord): Promise<void> {
    await this.store().putRecord(HOSTS, record.node, JSON.stringify(record));
  }

  async withdrawHost(node: string): Promise<void> {
    await this.store().deleteRecord(HOSTS, node);
  }
}
