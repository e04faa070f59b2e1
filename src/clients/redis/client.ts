// Every Redis connection Fennel opens (the transport's, its blocking duplicate, the result backend's and its
// subscriber, the event bus's) is a FennelRedis: an ioredis client with two rules ioredis does not have.
//
// 1. A command waits for a connection at most connectTimeoutMs. ioredis keeps a command issued while it is
//    disconnected in its offline queue until a reconnect, or until `maxRetriesPerRequest` reconnects have failed:
//    with 20 and a backoff to 2 s, a producer pointed at a server that is not there waited 40 to 70 s and then
//    saw ioredis's own error. Here the bound is time: once the server has been out of reach for connectTimeoutMs,
//    what waits is rejected with BrokerUnavailableError (URL masked, and the cause), and so is every new command
//    until a connection is ready again, so a producer's delay() or get() fails within its bound. The client still
//    reconnects for ever, with backoff: a worker's loops retry and carry on when the server is back, and a
//    restart shorter than connectTimeoutMs fails nothing, as commands in flight are sent again on the new
//    connection.
// 2. A database the server does not have is a ConfigError. ioredis sends SELECT on connect, reports a refusal
//    as an 'error' event (a stack trace when nothing listens) and carries on in database 0, so the queue and the
//    results of `redis://host/21` on a server with 16 databases landed in database 0. Here every waiting and
//    later command fails with the ConfigError naming the database, and the client stops: it never falls back.
//    (The refusal arrives before the offline queue is sent: ioredis waits for the replies to its handshake.)
//
// The primary connection of the broker and of the result backend reports its state (util/connection-state.ts),
// which a worker logs.

import { Redis, type Command, type RedisOptions } from 'ioredis';
import { BrokerUnavailableError, ConfigError } from '../../errors.ts';
import { ConnectionReporter, type ConnectionRole } from '../../util/connection-state.ts';
import type { RedisUrl } from './url.ts';

export interface RedisLink {
  url: RedisUrl;
  /** The role whose state this connection reports; undefined for secondary connections (duplicates, events). */
  role: ConnectionRole | undefined;
  /** How long a command waits for a connection, and one connection attempt may take. */
  connectTimeoutMs: number;
  connectionName: string;
}

/** The errors of a client that gave up waiting (or was refused its URL): a caller that retries on connection errors should not. */
const final = new WeakSet<object>();

/**
 * True for an error that means "the server has been out of reach for connectTimeoutMs" or "the server refused
 * the URL", also when an engine has wrapped it (its `cause`): retrying at once cannot succeed.
 */
export function gaveUp(error: unknown): boolean {
  const cause = (error as { cause?: unknown } | null)?.cause;
  return (typeof error === 'object' && error !== null && final.has(error)) || (typeof cause === 'object' && cause !== null && final.has(cause));
}

/** The client's own flushQueue (private in ioredis's types): rejects what waits, as maxRetriesPerRequest does. */
type Flushable = { flushQueue(error: Error, options?: { offlineQueue?: boolean; commandQueue?: boolean }): void };

function isSelectRefused(error: Error): boolean {
  // Redis 6+: "ERR DB index is out of range"; older servers: "ERR invalid DB index".
  return /DB index is out of range|invalid DB index/i.test(error.message);
}

/** ioredis's options for a link: the URL's parts, reconnecting for ever, commands bounded by time (above), not by reconnects. */
function redisOptions(link: RedisLink): RedisOptions {
  const { url } = link;
  return {
    host: url.host,
    port: url.port,
    db: url.db,
    ...(url.username !== undefined ? { username: url.username } : {}),
    ...(url.password !== undefined ? { password: url.password } : {}),
    ...(url.tls ? { tls: { ...url.tlsOptions } } : {}),
    // One attempt's TCP (and TLS) connect; a host that drops packets fails here instead of after the OS's minutes.
    connectTimeout: link.connectTimeoutMs,
    retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
    maxRetriesPerRequest: null,
    lazyConnect: false,
    connectionName: link.connectionName,
  };
}

/** Commands ioredis sends again by itself after a reconnect, without handling their failure. */
const SUBSCRIBE_COMMANDS = new Set(['subscribe', 'psubscribe', 'ssubscribe']);

export class FennelRedis extends Redis {
  private readonly link: RedisLink;
  private readonly reporter: ConnectionReporter | undefined;
  private lastError: Error | undefined;
  private giveUpTimer: NodeJS.Timeout | undefined;
  /** Set once the server has been out of reach for connectTimeoutMs: commands fail at once until it is back. */
  private unavailable: BrokerUnavailableError | undefined;
  /** The server refused the URL: every command fails with this, and the client does not reconnect. */
  private misconfigured: ConfigError | undefined;
  /** quit() or disconnect() was called: the close that follows is no outage. */
  private closing = false;

  constructor(link: RedisLink, overrides: Partial<RedisOptions> = {}) {
    super({ ...redisOptions(link), ...overrides });
    this.link = link;
    this.reporter = link.role ? new ConnectionReporter(link.role, link.url.safeUrl) : undefined;
    this.on('error', (error: Error) => this.onError(error));
    this.on('close', () => this.onDown());
    this.on('ready', () => this.onReady());
    this.on('end', () => this.stopTimer());
    this.armTimer(); // connecting now
  }

  override sendCommand(command: Command, stream?: Parameters<Redis['sendCommand']>[1]): unknown {
    // ioredis subscribes again by itself after a reconnect (event_handler's readyHandler) and drops the promise, so
    // a failure of that resubscribe (the connection closed before the answer, or refused here) would be an
    // unhandled rejection, which ends a Node process with code 1. Marked handled here; a caller's own subscribe
    // still sees its rejection.
    if (SUBSCRIBE_COMMANDS.has(command.name)) command.promise.catch(() => {});
    // While a connection is being set up ('connect'), its handshake goes through; commands then wait for it.
    const refusal = this.misconfigured ?? (this.unavailable && this.status !== 'ready' && this.status !== 'connect' ? this.unavailable : undefined);
    if (refusal) {
      command.reject(refusal);
      return command.promise;
    }
    if (command.name === 'quit') {
      this.closing = true;
      // Closing never waits for a server that is not there (ioredis would queue QUIT behind what waits).
      if (this.status !== 'ready') {
        this.disconnect();
        command.resolve(Buffer.from('OK'));
        return command.promise;
      }
    }
    return super.sendCommand(command, stream);
  }

  override disconnect(reconnect = false): void {
    if (!reconnect) this.closing = true;
    super.disconnect(reconnect);
  }

  /** A second connection with the same rules (ioredis's duplicate() would be a plain client); it reports nothing. */
  override duplicate(override: Partial<RedisOptions> = {}): FennelRedis {
    return new FennelRedis({ ...this.link, role: undefined }, override);
  }

  private onError(error: Error): void {
    this.lastError = error;
    if (this.misconfigured) return;
    if (this.link.url.db > 0 && isSelectRefused(error)) {
      this.refuse(
        new ConfigError(
          `the database ${this.link.url.db} of ${this.link.url.safeUrl} does not exist on this server (SELECT ${this.link.url.db}: ${error.message}); a Redis server has databases 0 to 15 unless its 'databases' setting says more`,
          { cause: error },
        ),
      );
      return;
    }
    if (this.status !== 'ready' && !this.closing) this.reporter?.down(error.message);
  }

  private onDown(): void {
    if (this.misconfigured || this.closing) return;
    this.reporter?.down(this.lastError?.message ?? 'connection lost');
    this.armTimer();
  }

  private onReady(): void {
    this.stopTimer();
    this.unavailable = undefined;
    this.lastError = undefined;
    this.reporter?.up();
  }

  private armTimer(): void {
    if (this.giveUpTimer || this.misconfigured) return;
    this.giveUpTimer = setTimeout(() => this.giveUp(), this.link.connectTimeoutMs);
    // A producer that is otherwise done must be able to exit; its pending command keeps it alive meanwhile.
    this.giveUpTimer.unref();
  }

  private stopTimer(): void {
    clearTimeout(this.giveUpTimer);
    this.giveUpTimer = undefined;
  }

  private giveUp(): void {
    this.giveUpTimer = undefined;
    if (this.status === 'ready' || this.status === 'end' || this.misconfigured) return;
    const cause = this.lastError?.message ?? 'the server did not answer';
    this.unavailable = new BrokerUnavailableError(this.link.url.safeUrl, `no connection within ${this.link.connectTimeoutMs} ms (connectTimeoutMs): ${cause}`, { cause: this.lastError });
    final.add(this.unavailable);
    // A handshake under way keeps its own commands (they are in the command queue); the rest are rejected.
    (this as unknown as Flushable).flushQueue(this.unavailable, { offlineQueue: true, commandQueue: this.status !== 'connect' });
    // Again after as long: a command that came in during a handshake (say, a server still loading its data,
    // which can take minutes without a close) is not left waiting either.
    this.armTimer();
  }

  private refuse(error: ConfigError): void {
    this.misconfigured = error;
    final.add(error);
    this.stopTimer();
    (this as unknown as Flushable).flushQueue(error);
    this.reporter?.config(error.message);
    this.disconnect();
  }
}

/** Opens a connection to `url` (parsed by parseRedisUrl) under the rules above. */
export function connectRedis(url: RedisUrl, options: { role?: ConnectionRole | undefined; connectTimeoutMs: number; connectionName: string }): FennelRedis {
  return new FennelRedis({ url, role: options.role, connectTimeoutMs: options.connectTimeoutMs, connectionName: options.connectionName });
}
