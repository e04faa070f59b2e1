// The contract every remote-control mailbox engine implements (Celery's pidbox, kombu's Mailbox): carry control
// requests from a client to every listening worker, and each worker's reply back to the client's own reply queue.
// The bodies and headers are src/control/protocol.ts's; an engine moves them in its broker's layout (kombu's on
// Redis and RabbitMQ, so Celery's workers and clients take part: docs/pidbox-wire.md). Who runs a request
// (isAddressedTo), stale requests, and gathering replies (client.ts) are written once, above the engines.
//
// What an engine promises:
//   - a request broadcast after listen() has resolved reaches that listener once (at most once: control is not
//     retried; a request lost with a connection is answered by no one, and the client names who did not answer);
//   - a reply sent to an open reply queue (openReplies(oid) resolved, not yet closed) is delivered to it once;
//     a reply to a queue nobody opened, or one already closed, is dropped, and leaves nothing behind;
//   - a body the engine cannot decode is handed on as `undefined` with the reason, never thrown at the listener.

import type { ControlHeaders, ControlRequest, ReplyTo } from './protocol.ts';

/** A request as a listener receives it: the decoded JSON body (parseControlRequest checks it) and its headers. */
export interface IncomingRequest {
  body: unknown;
  headers: Record<string, unknown>;
  /** Set when the message could not be decoded (body is then undefined): logged and dropped by the worker. */
  undecodable?: string;
}

export interface IncomingReply {
  body: unknown;
  headers: Record<string, unknown>;
}

/** A client's reply queue, opened before its request is broadcast. */
export interface ReplyInbox {
  /** The next reply, or undefined once `idleMs` pass with none (Celery's idle timeout). */
  next(idleMs: number): Promise<IncomingReply | undefined>;
  /** Drops the queue (and its binding); replies sent afterwards are dropped. */
  close(): Promise<void>;
}

export interface MailboxEngine {
  /** The broker URL, any password masked. */
  readonly url: string;
  /**
   * Receives every control request broadcast from now on, as worker `node` (whose mailbox queue it is), until
   * the returned function is called. Resolves once listening on the broker.
   */
  listen(node: string, onRequest: (request: IncomingRequest) => void): Promise<() => Promise<void>>;
  /** Broadcasts a request to every listening worker (each decides whether it is addressed). */
  broadcast(request: ControlRequest, headers: ControlHeaders): Promise<void>;
  /** Sends a worker's reply to the reply queue `replyTo` names (its routing key is the client's oid). */
  reply(replyTo: ReplyTo, body: Record<string, unknown>, headers: Record<string, unknown>): Promise<void>;
  /** Opens the reply queue of `oid`; open it before broadcasting the request whose replies it gathers. */
  openReplies(oid: string): Promise<ReplyInbox>;
  /** Releases the engine's connections; listeners and reply queues end. */
  close(): Promise<void>;
}

/**
 * Replies that have arrived at a reply queue, and the reader waiting for the next one: the in-process side of an
 * engine whose broker pushes replies (amqp://, and the channel engines of sqlite:// and memory://); Redis reads its list
 * with BRPOP instead.
 */
export class ReplyBuffer {
  private readonly replies: IncomingReply[] = [];
  private wake: (() => void) | undefined;

  push(reply: IncomingReply): void {
    this.replies.push(reply);
    this.wake?.();
  }

  /** The next reply, waiting at most `idleMs` for one. */
  async next(idleMs: number): Promise<IncomingReply | undefined> {
    if (this.replies.length === 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, idleMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return this.replies.shift();
  }

  /** Ends a wait in progress (the queue closed). */
  release(): void {
    this.wake?.();
  }
}
