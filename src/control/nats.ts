// The nats:// remote-control mailbox, on core NATS pub/sub: Celery's pidbox is at most once on every broker (a
// request lost with a connection is answered by no one, and the client names who did not answer), which is what
// core NATS does, so no JetStream stream is made. Celery has no NATS transport, so there is no kombu layout to match:
//   - a request is published on `<prefix>.pidbox.request`, to which every listening worker subscribes; each worker
//     decides whether it is addressed (isAddressedTo), as with Celery's fanout `celery.pidbox` exchange;
//   - a reply is published on `<prefix>.pidbox.reply.<subjectToken(oid)>`, the subject a client subscribes to
//     (openReplies) before it broadcasts; a reply to a subject nobody holds is dropped by the server and leaves
//     nothing behind. The oid comes from the request, which anyone could have written: escaped (clients/nats/core.ts),
//     it is one plain token, never a wildcard or another client's subject;
//   - each message is the JSON {body, headers} (the bodies and headers of control/protocol.ts).
// One connection per engine, shared by its listeners and reply subscriptions.

import { NatsPubSub, subjectToken } from '../clients/nats/core.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import { ReplyBuffer, type IncomingRequest, type MailboxEngine, type ReplyInbox } from './mailbox.ts';
import type { ControlHeaders, ControlRequest, ReplyTo } from './protocol.ts';

/** The body and headers of a message, or why it is not one. */
function unwrap(payload: string): { body: unknown; headers: Record<string, unknown> } | { undecodable: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch (error) {
    return { undecodable: `not JSON: ${(error as Error).message}` };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || !('body' in parsed)) return { undecodable: 'not a JSON object with a body' };
  const { body, headers } = parsed as { body: unknown; headers?: unknown };
  return { body, headers: headers !== null && typeof headers === 'object' && !Array.isArray(headers) ? (headers as Record<string, unknown>) : {} };
}

export class NatsMailboxEngine implements MailboxEngine {
  /** The URL with any password masked. */
  readonly url: string;
  private readonly pubsub: NatsPubSub;
  private readonly inboxes = new Set<ReplyInbox>();
  private readonly listeners = new Set<() => void>();

  constructor(url: string, options: { connectTimeoutMs?: number | undefined } = {}) {
    this.pubsub = new NatsPubSub(url, { connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, name: `fennel-control:${process.pid}` });
    this.url = this.pubsub.url;
  }

  /** `<prefix>.pidbox.request`: where every request goes. */
  get requestSubject(): string {
    return this.pubsub.subject('pidbox', 'request');
  }

  /** `<prefix>.pidbox.reply.<token>`: where the replies to client `oid` go. */
  replySubject(oid: string): string {
    return this.pubsub.subject('pidbox', 'reply', subjectToken(oid));
  }

  async listen(_node: string, onRequest: (request: IncomingRequest) => void): Promise<() => Promise<void>> {
    const stop = await this.pubsub.subscribe(this.requestSubject, (payload) => {
      const message = unwrap(payload);
      onRequest('undecodable' in message ? { body: undefined, headers: {}, undecodable: message.undecodable } : message);
    });
    this.listeners.add(stop);
    return async () => {
      this.listeners.delete(stop);
      stop();
    };
  }

  broadcast(request: ControlRequest, headers: ControlHeaders): Promise<void> {
    return this.pubsub.publish(this.requestSubject, JSON.stringify({ body: request, headers }));
  }

  reply(replyTo: ReplyTo, body: Record<string, unknown>, headers: Record<string, unknown>): Promise<void> {
    return this.pubsub.publish(this.replySubject(String(replyTo.routing_key)), JSON.stringify({ body, headers }));
  }

  async openReplies(oid: string): Promise<ReplyInbox> {
    const buffer = new ReplyBuffer();
    const stop = await this.pubsub.subscribe(this.replySubject(oid), (payload) => {
      const message = unwrap(payload);
      if (!('undecodable' in message)) buffer.push(message);
    });
    let closed = false;
    const inbox: ReplyInbox = {
      next: (idleMs) => (closed ? Promise.resolve(undefined) : buffer.next(idleMs)),
      close: async () => {
        if (closed) return;
        closed = true;
        this.inboxes.delete(inbox);
        stop();
        buffer.release();
      },
    };
    this.inboxes.add(inbox);
    return inbox;
  }

  async close(): Promise<void> {
    await Promise.all([...this.inboxes].map((inbox) => inbox.close()));
    for (const stop of this.listeners) stop();
    this.listeners.clear();
    await this.pubsub.close();
  }
}
