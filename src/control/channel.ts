// A mailbox engine over a channel engine (src/channels/engine.ts): the sqlite:// mailbox, which has no Celery
// layout to follow (Celery has no SQLite broker), so it uses what the broker's file already carries. A request is
// published on the channel `celery.pidbox`, a reply on `reply.celery.pidbox.<oid>`; each payload is the JSON
// {body, headers}. A channel's promises are the mailbox's: a subscription live when a payload is published gets
// it once, later ones never (so a worker that starts later, or a reply queue opened again, sees nothing old), and
// a reply published to an oid nobody follows is read by no one and expires with the channel's rows (a minute).

import type { ChannelEngine } from '../channels/engine.ts';
import { ReplyBuffer, type IncomingRequest, type MailboxEngine, type ReplyInbox } from './mailbox.ts';
import { CONTROL_EXCHANGE, REPLY_EXCHANGE, type ControlHeaders, type ControlRequest, type ReplyTo } from './protocol.ts';

const replyChannel = (oid: string): string => `${REPLY_EXCHANGE}.${oid}`;

function unwrap(payload: string): { body: unknown; headers: Record<string, unknown> } | { undecodable: string } {
  try {
    const parsed = JSON.parse(payload) as { body?: unknown; headers?: unknown };
    const headers = parsed.headers !== null && typeof parsed.headers === 'object' ? (parsed.headers as Record<string, unknown>) : {};
    return { body: parsed.body, headers };
  } catch (error) {
    return { undecodable: `not JSON: ${(error as Error).message}` };
  }
}

export class ChannelMailboxEngine implements MailboxEngine {
  readonly url: string;

  constructor(private readonly channels: ChannelEngine) {
    this.url = channels.url;
  }

  listen(_node: string, onRequest: (request: IncomingRequest) => void): Promise<() => Promise<void>> {
    return this.channels.subscribe(CONTROL_EXCHANGE, (payload) => {
      const message = unwrap(payload);
      onRequest('undecodable' in message ? { body: undefined, headers: {}, undecodable: message.undecodable } : message);
    });
  }

  broadcast(request: ControlRequest, headers: ControlHeaders): Promise<void> {
    return this.channels.publish(CONTROL_EXCHANGE, JSON.stringify({ body: request, headers }));
  }

  reply(replyTo: ReplyTo, body: Record<string, unknown>, headers: Record<string, unknown>): Promise<void> {
    return this.channels.publish(replyChannel(replyTo.routing_key), JSON.stringify({ body, headers }));
  }

  async openReplies(oid: string): Promise<ReplyInbox> {
    const inbox = new ReplyBuffer();
    const stop = await this.channels.subscribe(replyChannel(oid), (payload) => {
      const message = unwrap(payload);
      if (!('undecodable' in message)) inbox.push(message);
    });
    return {
      next: (idleMs) => inbox.next(idleMs),
      close: async () => {
        await stop();
        inbox.release();
      },
    };
  }

  close(): Promise<void> {
    return this.channels.close();
  }
}
