// Actors (Pyro's remote objects, Ray's actors): `app.actor(name, class, options)` declares a class workers can host;
// `create()` places an instance on a live host and returns a typed proxy; `lookup(name)` finds one from any
// process. A call is a task message (`fennel.actor.call`: the actor's id, the method, its arguments, the proxy's
// session) on the actor's own queue, so calls inherit the brokers, at-least-once delivery, signatures and the
// dashboard. The host side is host.ts; the name server names.ts. docs/actors.md.

import { randomUUID } from 'node:crypto';
import { ActorNotFoundError, ConfigError } from '../errors.ts';
import type { AsyncResult } from '../app/result.ts';
import type { ResultBackend } from '../backends/backend.ts';
import { ACTOR_LEASE_MS, actorLease, actorQueue, type ActorEntry, type InstanceMode, type Names } from './names.ts';

export const ACTOR_START = 'fennel.actor.start';
export const ACTOR_CALL = 'fennel.actor.call';
export const ACTOR_STOP = 'fennel.actor.stop';
export const ACTOR_CLOSE = 'fennel.actor.close';

/** Names a proxy keeps for itself: a class may not have methods called so. */
const RESERVED = new Set(['id', 'name', 'destroy', 'close', 'then', 'constructor', 'snapshot', 'restore']);

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any class: its constructor's arguments are the user's
export type ActorClass<T extends object = object> = new (...args: any[]) => T;

export interface ActorOptions {
  /** Pyro's instance modes: one instance for every proxy (default), one per proxy, or a fresh one per call. */
  mode?: InstanceMode;
  /** Calls of one instance at once (async methods); 1 (the default) runs them one at a time in arrival order. */
  maxConcurrency?: number;
  /** Constructed again on another host when its host dies (default true); false: its calls fail with ActorDiedError. */
  restart?: boolean;
  /** How many times it may be restarted (default 3). */
  maxRestarts?: number;
}

export interface ActorDefinition {
  name: string;
  cls: ActorClass;
  options: Required<ActorOptions>;
  /** Its public methods, own and inherited: what a proxy offers and a call may name (not the hooks, not `_private`). */
  methods: ReadonlySet<string>;
}

export interface CreateOptions<A extends unknown[]> {
  /** A name to find it by (`lookup`); unique among live actors. */
  name?: string;
  /** Free-form metadata, listed and filtered by the name server. */
  meta?: Record<string, string>;
  /** The host's node name (`fennel@host1`); by default the least-loaded live host that knows the class. */
  worker?: string;
  /** The constructor's arguments. */
  args?: A;
  restart?: boolean;
  maxRestarts?: number;
  /** How long create waits for the host to construct it (default 30 s). */
  timeoutMs?: number;
}

/** A method as the proxy offers it: awaited, `.async` (the AsyncResult at once), `.oneway` (no result kept). */
export type ProxyMethod<A extends unknown[], R> = ((...args: A) => Promise<R>) & {
  async(...args: A): AsyncResult<R>;
  oneway(...args: A): void;
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- matches any method
type AnyMethod = (...args: any[]) => any;

/** The typed proxy: every public method of the class, and the handle's own members. */
export type ActorProxy<T> = {
  readonly [K in keyof T as K extends string ? (T[K] extends AnyMethod ? (K extends 'snapshot' | 'restore' ? never : K) : never) : never]: T[K] extends (...args: infer A) => infer R ? ProxyMethod<A, Awaited<R>> : never;
} & ActorHandle;

export interface ActorHandle {
  readonly id: string;
  readonly name: string;
  /** Ends this proxy's session (a `session` actor drops its instance); the actor stays. */
  close(): Promise<void>;
  /** Stops the actor once the calls before it have run, and removes its name. */
  destroy(): Promise<void>;
}

/** What actors need of the app (a narrow view: this module needs no Fennel). */
export interface ActorApp {
  readonly actorDefinitions: Map<string, ActorDefinition>;
  readonly names: Names;
  readonly backend: ResultBackend;
  sendTask<R = unknown>(name: string, args?: readonly unknown[], options?: { queue?: string; worker?: string; ignoreResult?: boolean }): AsyncResult<R>;
}

/** The names of a class's methods, own and inherited (not Object's). */
function methodNames(cls: ActorClass): Set<string> {
  const found = new Set<string>();
  for (let proto = cls.prototype as object | null; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto) as object | null) {
    for (const key of Object.getOwnPropertyNames(proto)) if (typeof Object.getOwnPropertyDescriptor(proto, key)?.value === 'function') found.add(key);
  }
  return found;
}

export class ActorType<T extends object, A extends unknown[]> {
  constructor(
    private readonly app: ActorApp,
    readonly definition: ActorDefinition,
  ) {}

  /** Places a new instance on a host and returns its proxy once the host has constructed it. */
  async create(options: CreateOptions<A> = {}): Promise<ActorProxy<T>> {
    const { definition } = this;
    const names = this.app.names;
    const id = randomUUID();
    const name = options.name ?? id;
    if (options.name !== undefined && (options.name === '' || /[\s\x00-\x1f]/.test(options.name))) throw new ConfigError(`actor name ${JSON.stringify(options.name)}: a name needs at least one character and no spaces or control characters`);
    const host = options.worker ?? (await this.pickHost());
    if (options.name !== undefined && !(await names.claim(options.name, id))) throw new ConfigError(`an actor named '${options.name}' exists already: ${definition.name}.lookup('${options.name}') finds it, destroy() frees the name`);
    const entry: ActorEntry = {
      id,
      name,
      className: definition.name,
      mode: definition.options.mode,
      args: options.args ?? [],
      meta: options.meta ?? {},
      restart: options.restart ?? definition.options.restart,
      maxRestarts: options.maxRestarts ?? definition.options.maxRestarts,
      restarts: 0,
      maxConcurrency: definition.options.maxConcurrency,
      host,
      state: 'alive',
      createdAt: new Date().toISOString(),
    };
    await names.put(entry);
    // Held in the host's name until it starts the actor (and renews it): no host takes it over meanwhile, unless the
    // start waits longer than the lease (a busy or dead host), and then another host places it instead.
    await this.app.backend.acquireLease?.(actorLease(id), host, ACTOR_LEASE_MS);
    try {
      await this.app.sendTask(ACTOR_START, [id], { worker: host }).get({ timeoutMs: options.timeoutMs ?? 30_000 });
    } catch (error) {
      // The host refused it (no such class there, a constructor that threw): it does not exist. A timeout leaves it
      // registered: a host may still start it, or take it over once the lease lapses.
      if ((error as { code?: string }).code === 'FENNEL_REMOTE_TASK') await names.remove(entry).catch(() => {});
      throw error;
    }
    return makeProxy<T>(this.app, entry, definition);
  }

  /** A proxy of the live actor named `name` (from any process). */
  async lookup(name: string): Promise<ActorProxy<T>> {
    const entry = await this.app.names.lookup(name);
    if (!entry || entry.className !== this.definition.name) throw new ActorNotFoundError(`no ${this.definition.name} actor named '${name}' in the name server${entry ? ` (it is a ${entry.className})` : ''}`);
    return makeProxy<T>(this.app, entry, this.definition);
  }

  /** The least-loaded live host that can construct this class. */
  private async pickHost(): Promise<string> {
    const hosts = (await this.app.names.hosts()).filter((host) => host.classes.includes(this.definition.name));
    if (hosts.length === 0) throw new ConfigError(`no live worker hosts actors of class '${this.definition.name}': start one with \`fennel worker --actors\` on an app that declares it`);
    hosts.sort((a, b) => a.actors - b.actors || a.calls - b.calls || a.node.localeCompare(b.node));
    return hosts[0]!.node;
  }
}

function makeProxy<T>(app: ActorApp, entry: ActorEntry, definition: ActorDefinition): ActorProxy<T> {
  const queue = actorQueue(entry.id);
  const session = entry.mode === 'session' ? randomUUID() : null;
  const proxy: Record<string, unknown> = {};
  for (const method of definition.methods) {
    const send = (args: unknown[], ignoreResult: boolean): AsyncResult<unknown> => app.sendTask(ACTOR_CALL, [entry.id, method, args, session], { queue, ...(ignoreResult ? { ignoreResult } : {}) });
    const call = (...args: unknown[]): Promise<unknown> => send(args, false).get();
    call.async = (...args: unknown[]) => send(args, false);
    call.oneway = (...args: unknown[]) => void send(args, true).sent.catch(() => {});
    proxy[method] = call;
  }
  Object.defineProperties(proxy, {
    id: { value: entry.id, enumerable: true },
    name: { value: entry.name, enumerable: true },
    close: { value: async () => (session ? void (await app.sendTask(ACTOR_CLOSE, [entry.id, session], { queue }).get()) : undefined) },
    destroy: { value: async () => void (await app.sendTask(ACTOR_STOP, [entry.id], { queue }).get()) },
  });
  return proxy as ActorProxy<T>;
}

/** Checks a class given to app.actor(). */
export function defineActor(name: string, cls: ActorClass, options: ActorOptions): ActorDefinition {
  if (typeof cls !== 'function') throw new ConfigError(`app.actor('${name}'): the second argument must be a class`);
  const mode = options.mode ?? 'single';
  if (!['single', 'session', 'percall'].includes(mode)) throw new ConfigError(`app.actor('${name}'): mode must be single, session or percall (got '${mode}')`);
  const maxConcurrency = options.maxConcurrency ?? 1;
  if (!Number.isInteger(maxConcurrency) || maxConcurrency < 1) throw new ConfigError(`app.actor('${name}'): maxConcurrency must be a positive integer`);
  const maxRestarts = options.maxRestarts ?? 3;
  if (!Number.isInteger(maxRestarts) || maxRestarts < 0) throw new ConfigError(`app.actor('${name}'): maxRestarts must be an integer ≥ 0`);
  const names = methodNames(cls);
  for (const key of ['id', 'name', 'destroy', 'close', 'then']) {
    if (names.has(key)) throw new ConfigError(`app.actor('${name}'): a method may not be called '${key}' (the proxy's own)`);
  }
  const methods = new Set([...names].filter((key) => !RESERVED.has(key) && !key.startsWith('_')));
  return { name, cls, options: { mode, maxConcurrency, restart: options.restart ?? true, maxRestarts }, methods };
}
