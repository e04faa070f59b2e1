// One AMQP connection that comes back: the current session (an amqplib connection plus a confirm channel
// for publishing), opened on first use and again after RabbitMQ closes it or the socket drops. Each session
// has a generation number; what was declared or consumed on an old session is redone by its owner (the
// transport re-declares on first use, subscriptions re-consume) when `onLost` tells them it is gone.
// Callers that must not fail on a short outage (publish, consumers) retry with backoff around `session()`.
// They stop once the broker has refused connections for connectTimeoutMs: the error of that attempt is not a
// connection error any more (isConnectionError), so a producer's publish fails within its bound, while a
// consumer's own reopen loop keeps trying for ever. Each attempt is itself bounded by the same time (amqplib's
// socket timeout covers the TCP connect and the AMQP handshake), so a host that drops packets is no longer
// waited for until the OS gives up. RabbitMQ refusing the credentials or the vhost is a ConfigError: the URL's
// fault, which no retry mends. The broker and rpc:// connections report their state (util/connection-state.ts).

import { Socket } from 'node:net';
import { connect, type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { BrokerUnavailableError, ClosedError, ConfigError } from '../../errors.ts';
import { ConnectionReporter, DEFAULT_CONNECT_TIMEOUT_MS, type ConnectionRole } from '../../util/connection-state.ts';

export interface Session {
  readonly generation: number;
  readonly model: ChannelModel;
  /** Queues and delay levels declared on this session (declarations are redone on the next one). */
  readonly declared: Set<string>;
  alive: boolean;
}

/** Connection failures after the broker had refused connections for connectTimeoutMs: retrying them is pointless. */
const givenUp = new WeakSet<object>();

/** Errors that mean "the broker or the path to it is away", worth a retry on a new connection. */
export function isConnectionError(error: unknown): boolean {
  if (typeof error === 'object' && error !== null && givenUp.has(error)) return false;
  const text = `${(error as Error)?.name} ${(error as Error)?.message} ${String((error as { code?: string | number })?.code)}`;
  return /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EHOSTUNREACH|Connection closed|Channel closed|channel ended|CONNECTION_FORCED|Socket closed|Unexpected close|Heartbeat timeout|320|CHANNEL_ERROR|Unconfirmed|nack|Frame size|Connection ended|not connected|stopping|shutdown/i.test(text);
}

/**
 * What RabbitMQ's refusal to open a connection means, or undefined for any other failure. These are the URL's
 * fault (its credentials, its vhost), not an outage: retrying cannot help, so they are ConfigErrors.
 */
function refusalOf(error: unknown, connectUrl: string): string | undefined {
  const message = (error as Error)?.message ?? '';
  if (/ACCESS.REFUSED/.test(message)) return `RabbitMQ refused the user name or password (${message})`;
  // A vhost that does not exist (or that the user may not use) is a connection.close at open; amqplib's
  // message keeps only the frame's name.
  if (/NOT.ALLOWED|Expected ConnectionOpenOk; got <ConnectionClose/.test(message)) {
    const vhost = decodeURIComponent(new URL(connectUrl).pathname.slice(1)) || '/';
    return `RabbitMQ refused to open the virtual host '${vhost}': it does not exist, or the user may not use it (${message})`;
  }
  return undefined;
}

export interface AmqpConnectionOptions {
  /** Bounds one connection attempt, and how long callers retry a broker that refuses them. Default 5000. */
  connectTimeoutMs?: number | undefined;
  /** The role whose state this connection reports (util/connection-state.ts); none for the event bus. */
  role?: ConnectionRole | undefined;
}

export class AmqpConnection {
  private current: Session | undefined;
  private opening: Promise<Session> | undefined;
  private confirm: Promise<ConfirmChannel> | undefined;
  private generation = 0;
  private closed = false;
  private readonly lostListeners = new Set<(session: Session) => void>();
  private readonly connectTimeoutMs: number;
  private readonly reporter: ConnectionReporter | undefined;
  /** When the attempts that have failed since the last session began (undefined while connections succeed). */
  private failingSince: number | undefined;
  private lastFailure = 0;

  constructor(
    private readonly connectUrl: string,
    readonly safeUrl: string,
    options: AmqpConnectionOptions = {},
  ) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.reporter = options.role ? new ConnectionReporter(options.role, safeUrl) : undefined;
  }

  /** The live session, connecting (once, for all callers) if there is none. Rejects with BrokerUnavailableError. */
  session(): Promise<Session> {
    if (this.closed) return Promise.reject(new ClosedError(`transport ${this.safeUrl}`));
    if (this.current?.alive) return Promise.resolve(this.current);
    this.opening ??= this.open().finally(() => (this.opening = undefined));
    return this.opening;
  }

  private async open(): Promise<Session> {
    let model: ChannelModel;
    const started = Date.now();
    try {
      // Heartbeats as the broker suggests (RabbitMQ: 60 s), so a broker host that vanished without closing
      // the socket is noticed too.
      // noDelay: amqplib leaves Nagle's algorithm on, which holds a small frame (an ack, a reply) back
      // until the peer's delayed ACK, tens of milliseconds later.
      // timeout: the socket's idle limit until the connection is open (TCP connect and AMQP handshake).
      model = await connect(this.connectUrl, { noDelay: true, timeout: this.connectTimeoutMs, clientProperties: { connection_name: `fennel:${process.pid}` } });
    } catch (error) {
      const reason = (error as Error).message;
      const refusal = refusalOf(error, this.connectUrl);
      if (refusal) {
        const misconfigured = new ConfigError(`${this.safeUrl}: ${refusal}`, { cause: error });
        givenUp.add(misconfigured);
        this.reporter?.config(misconfigured.message);
        throw misconfigured;
      }
      // Attempts far apart (a producer that sends now and then) each get a window of their own; a caller's
      // retries, at most 2 s apart, share one.
      if (this.failingSince === undefined || started - this.lastFailure > Math.max(2 * this.connectTimeoutMs, 5_000)) this.failingSince = started;
      this.lastFailure = Date.now();
      this.reporter?.down(reason);
      if (Date.now() - this.failingSince < this.connectTimeoutMs) throw new BrokerUnavailableError(this.safeUrl, reason, { cause: error });
      const unavailable = new BrokerUnavailableError(this.safeUrl, `no connection within ${this.connectTimeoutMs} ms (connectTimeoutMs): ${reason}`, { cause: error });
      givenUp.add(unavailable);
      throw unavailable;
    }
    this.failingSince = undefined;
    this.reporter?.up();
    if (this.closed) {
      await model.close().catch(() => {});
      throw new ClosedError(`transport ${this.safeUrl}`);
    }
    coalesceWrites(model);
    const session: Session = { generation: ++this.generation, model, declared: new Set(), alive: true };
    const lost = (error?: unknown): void => {
      if (!session.alive) return;
      session.alive = false;
      if (!this.closed) this.reporter?.down(error instanceof Error ? error.message : 'connection lost');
      if (this.current === session) {
        this.current = undefined;
        this.confirm = undefined;
      }
      for (const listener of [...this.lostListeners]) listener(session);
    };
    // 'error' always comes with (or before) 'close'; the listener only keeps it from being an uncaught error.
    model.on('error', () => {});
    model.on('close', lost);
    this.current = session;
    return session;
  }

  /** Called when a session ends (connection closed by the broker, socket lost); not on `close()`. */
  onLost(listener: (session: Session) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** The publishing channel of the live session (publisher confirms on), reopened if a channel error closed it. */
  async confirmChannel(): Promise<{ session: Session; channel: ConfirmChannel }> {
    const session = await this.session();
    const opening = (this.confirm ??= (async () => {
      const channel = await session.model.createConfirmChannel();
      channel.on('error', () => {});
      channel.on('close', () => {
        if (this.confirm === opening) this.confirm = undefined;
      });
      return channel;
    })());
    try {
      return { session, channel: await opening };
    } catch (error) {
      if (this.confirm === opening) this.confirm = undefined;
      throw error;
    }
  }

  /**
   * Runs `fn` on a throwaway channel of the live session and closes it. For declarations and probes: in
   * AMQP any channel error (a passive declare of a missing queue, a declare with other arguments) closes
   * the channel, so these never share one with publishes or consumers.
   */
  async withChannel<T>(fn: (channel: Channel, session: Session) => Promise<T>): Promise<T> {
    const session = await this.session();
    const channel = await session.model.createChannel();
    channel.on('error', () => {});
    try {
      return await fn(channel, session);
    } finally {
      await channel.close().catch(() => {});
    }
  }

  /**
   * Drops a session that has stopped answering: its socket is destroyed (a connection.close would wait for a
   * reply that may never come), so amqplib fails what waits on it and 'close' tells every owner to reconnect.
   */
  discard(session: Session): void {
    if (!session.alive) return;
    const socket = (session.model as unknown as { connection?: { stream?: unknown } }).connection?.stream;
    // With an error: amqplib watches the socket's 'error' and 'end', not its 'close'.
    if (socket instanceof Socket) socket.destroy(new Error('the connection stopped answering (a publish went unconfirmed); dropped'));
    else void session.model.close().catch(() => {});
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const session = this.current ?? (await this.opening?.catch(() => undefined));
    this.current = undefined;
    if (session) {
      session.alive = false;
      await session.model.close().catch(() => {});
    }
  }
}

/**
 * amqplib writes each frame (an ack, a publish, a confirm-awaited reply) to the socket as a write of its
 * own: a syscall and, with noDelay, a packet each, so a worker settling 100 deliveries in a turn made
 * hundreds of writes (a quarter of its CPU). The socket is corked at the first write and uncorked on the
 * next tick, once the running callback and every promise continuation it set off have written: one writev
 * for them all, and no added wait (a setImmediate would hold a write made in amqplib's own setImmediate
 * over to the next loop iteration).
 * `connection.stream` is amqplib's internal handle on the socket; without it, writes go out as before.
 */
function coalesceWrites(model: ChannelModel): void {
  const socket = (model as unknown as { connection?: { stream?: unknown } }).connection?.stream;
  if (!(socket instanceof Socket)) return;
  const write = socket.write.bind(socket);
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  socket.write = ((...args: Parameters<Socket['write']>) => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    return write(...args);
  }) as Socket['write'];
}

/** True for the AMQP reply codes of a passive declare or purge of a queue that does not exist. */
export function isNotFound(error: unknown): boolean {
  return (error as { code?: unknown })?.code === 404 || /NOT_FOUND|404/.test(String((error as Error)?.message));
}

/** True for a declare whose arguments differ from the existing queue's or exchange's (PRECONDITION_FAILED). */
export function isPreconditionFailed(error: unknown): boolean {
  return (error as { code?: unknown })?.code === 406 || /PRECONDITION_FAILED|406/.test(String((error as Error)?.message));
}
