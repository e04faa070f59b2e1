// Every error a Fennel user can catch. One tree under FennelError, each class with a stable `code`
// (documented in docs/errors.md; test/unit/errors.test.ts keeps the two in step) and a message that
// says what was wrong and what to do. Control signals a task may throw (Retry, Reject) live here too.

export class FennelError extends Error {
  readonly code: string = 'FENNEL_ERROR';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FennelError';
  }
}

/** A constructor option, URL or environment variable is wrong. */
export class ConfigError extends FennelError {
  override readonly code = 'FENNEL_CONFIG';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/** Arguments or a result cannot be carried by JSON (functions, cycles, BigInt, Map, class instances …). */
export class SerializationError extends FennelError {
  override readonly code = 'FENNEL_SERIALIZATION';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SerializationError';
  }
}

/** The encoded message is larger than `maxPayloadBytes`. */
export class PayloadTooLargeError extends FennelError {
  override readonly code = 'FENNEL_PAYLOAD_TOO_LARGE';
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`message is ${bytes} bytes, over the limit of ${limit} (option maxPayloadBytes); pass a reference to the data instead`);
    this.name = 'PayloadTooLargeError';
  }
}

/** A message on the wire is not a valid Celery protocol v2 task message. */
export class ProtocolError extends FennelError {
  override readonly code = 'FENNEL_PROTOCOL';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProtocolError';
  }
}

/** `AsyncResult.get()` waited longer than `timeoutMs`; `hint` (also in the message) says why, when known. */
export class TimeoutError extends FennelError {
  override readonly code = 'FENNEL_TIMEOUT';
  constructor(
    readonly taskId: string,
    readonly timeoutMs: number,
    readonly taskName?: string,
    /** "no worker is consuming queue 'celery'; workers consume: math", when the broker can tell. */
    readonly hint?: string,
  ) {
    super(`task ${taskName ? `${taskName} ` : ''}${taskId} not ready after ${timeoutMs} ms${hint ? `: ${hint}` : ''}`);
    this.name = 'TimeoutError';
  }
}

/** A task failed remotely; `get()` re-throws it with the remote exception's name, message and stack. */
export class RemoteTaskError extends FennelError {
  override readonly code = 'FENNEL_REMOTE_TASK';
  constructor(
    readonly taskId: string,
    readonly remoteName: string,
    readonly remoteMessage: string,
    readonly remoteStack: string | null,
    readonly remoteModule: string,
    readonly state: string,
  ) {
    super(`task ${taskId} ${state === 'REVOKED' ? 'was revoked' : 'failed'}: ${remoteName}: ${remoteMessage}`);
    this.name = 'RemoteTaskError';
  }
}

/**
 * The broker or result store cannot be reached (within `connectTimeoutMs`), opened or written. `url` has its
 * password masked. The message is `<url>: <reason>`; a reason that already starts with the URL (an engine
 * re-wrapping its connection layer's error) is not prefixed twice.
 */
export class BrokerUnavailableError extends FennelError {
  override readonly code = 'FENNEL_BROKER_UNAVAILABLE';
  constructor(
    readonly url: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason.startsWith(`${url}: `) ? reason : `${url}: ${reason}`, options);
    this.name = 'BrokerUnavailableError';
  }
}

/** A Fennel error as it is (BrokerUnavailableError after connectTimeoutMs, ConfigError); anything else a client library threw as BrokerUnavailableError for `url`. */
export function asBrokerUnavailable(url: string, error: unknown): Error {
  if (error instanceof FennelError) return error;
  return new BrokerUnavailableError(url, (error as Error)?.message ?? String(error), { cause: error });
}

/** The app, transport or worker was used after `close()`. */
export class ClosedError extends FennelError {
  override readonly code = 'FENNEL_CLOSED';
  constructor(what: string) {
    super(`${what} is closed`);
    this.name = 'ClosedError';
  }
}

/**
 * A channel subscriber fell behind: `bufferSize` messages were waiting unread when another arrived, and it
 * subscribed with `overflow: 'error'` (the default). Its iterator throws this once and ends.
 */
export class ChannelOverflowError extends FennelError {
  override readonly code = 'FENNEL_CHANNEL_OVERFLOW';
  constructor(
    readonly channel: string,
    readonly bufferSize: number,
  ) {
    super(
      `the subscriber of channel '${channel}' fell behind: ${bufferSize} messages were waiting unread (bufferSize) when another arrived; read faster, raise bufferSize, or subscribe with overflow: 'drop-oldest'`,
    );
    this.name = 'ChannelOverflowError';
  }
}

/**
 * Control signal: thrown by `ctx.retry()` (or by user code) to run the task again later.
 * The worker republishes the message with `retries + 1` before acknowledging the current delivery.
 */
export class Retry extends FennelError {
  override readonly code = 'FENNEL_RETRY';
  constructor(
    /** Null: the task's retry policy decides (its backoff, else at once). */
    readonly countdownSec: number | null,
    readonly reason?: unknown,
    /** The error that made the task retry; stored as the FAILURE if no retries are left. */
    readonly error?: unknown,
  ) {
    super(countdownSec === null ? 'retry' : `retry in ${countdownSec} s`);
    this.name = 'Retry';
  }
}

/** Control signal: the task refuses the message; it goes to the dead letters and is not retried. */
export class Reject extends FennelError {
  override readonly code = 'FENNEL_REJECT';
  constructor(readonly reason: string) {
    super(`rejected: ${reason}`);
    this.name = 'Reject';
  }
}

/** `Actor.lookup(name)`: no live actor of that class holds the name (never created, destroyed, or another class's). */
export class ActorNotFoundError extends FennelError {
  override readonly code = 'FENNEL_ACTOR_NOT_FOUND';
  constructor(message: string) {
    super(message);
    this.name = 'ActorNotFoundError';
  }
}

/**
 * A cache operation failed: its server did not answer within the time limit, refused the value (too large for
 * memcached), or is down. Only `cache.set()` and `cache.add()` of a value too large reject with it; everywhere
 * else the Cache turns it into a miss, counted and logged at warn (src/cache/cache.ts).
 */
export class CacheError extends FennelError {
  override readonly code = 'FENNEL_CACHE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CacheError';
  }
}

/** Every code, for docs/errors.md and its test. */
export const ERROR_CODES = {
  FENNEL_ERROR: FennelError,
  FENNEL_CONFIG: ConfigError,
  FENNEL_SERIALIZATION: SerializationError,
  FENNEL_PAYLOAD_TOO_LARGE: PayloadTooLargeError,
  FENNEL_PROTOCOL: ProtocolError,
  FENNEL_TIMEOUT: TimeoutError,
  FENNEL_REMOTE_TASK: RemoteTaskError,
  FENNEL_BROKER_UNAVAILABLE: BrokerUnavailableError,
  FENNEL_CLOSED: ClosedError,
  FENNEL_CHANNEL_OVERFLOW: ChannelOverflowError,
  FENNEL_ACTOR_NOT_FOUND: ActorNotFoundError,
  FENNEL_CACHE: CacheError,
  FENNEL_RETRY: Retry,
  FENNEL_REJECT: Reject,
} as const;
