// The memory:// mailbox engine: requests and replies go straight to the listeners and reply queues of this
// process. Shared by every app of the process with the same URL (as memory:// transports are), so a client and
// a worker on two apps meet; nothing crosses a process boundary. Messages are copied through JSON, as a broker
// would, so no listener shares an object with the sender.

import type { IncomingReply, IncomingRequest, MailboxEngine, ReplyInbox } from './mailbox.ts';
import type { ControlHeaders, ControlRequest, ReplyTo } from './protocol.ts';

const copy = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

export class MemoryMailboxEngine implements MailboxEngine {
  private readonly listeners = new Set<(request: IncomingRequest) => void>();
  /** Open reply queues, by oid: the replies waiting, and the reader waiting for one. */
  private readonly inboxes = new Map<string, { replies: IncomingReply[]; wake: (() => void) | undefined }>();

  constructor(readonly url: string) {}

  async listen(_node: string, onRequest: (request: IncomingRequest) => void): Promise<() => Promise<void>> {
    const listener = (request: IncomingRequest): void => onRequest(request);
    this.listeners.add(listener);
    return async () => void this.listeners.delete(listener);
  }

  async broadcast(request: ControlRequest, headers: ControlHeaders): Promise<void> {
    for (const listener of [...this.listeners]) listener({ body: copy(request), headers: { ...headers } });
  }

  async reply(replyTo: ReplyTo, body: Record<string, unknown>, headers: Record<string, unknown>): Promise<void> {
    const inbox = this.inboxes.get(replyTo.routing_key);
    if (!inbox) return;
    inbox.replies.push({ body: copy(body), headers: { ...headers } });
    inbox.wake?.();
  }

  async openReplies(oid: string): Promise<ReplyInbox> {
    const inbox: { replies: IncomingReply[]; wake: (() => void) | undefined } = { replies: [], wake: undefined };
    this.inboxes.set(oid, inbox);
    return {
      next: async (idleMs) => {
        if (inbox.replies.length === 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, idleMs);
            inbox.wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          inbox.wake = undefined;
        }
        return inbox.replies.shift();
      },
      close: async () => {
        if (this.inboxes.get(oid) === inbox) this.inboxes.delete(oid);
        inbox.wake?.();
      },
    };
  }

  async close(): Promise<void> {
    // Shared by URL within the process: listeners and inboxes end themselves.
  }
}
