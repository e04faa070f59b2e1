// The memory:// mailbox engine: requests and replies go straight to the listeners and reply queues of this
// process. Shared by every app of the process with the same URL (as memory:// transports are), so a client and
// a worker on two apps meet; nothing crosses a process boundary. Messages are copied through JSON, as a broker
// would, so no listener shares an object with the sender.

import { ReplyBuffer, type IncomingRequest, type MailboxEngine, type ReplyInbox } from './mailbox.ts';
import type { ControlHeaders, ControlRequest, ReplyTo } from './protocol.ts';

const copy = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

export class MemoryMailboxEngine implements MailboxEngine {
  private readonly listeners = new Set<(request: IncomingRequest) => void>();
  /** Open reply queues, by oid. */
  private readonly inboxes = new Map<string, ReplyBuffer>();

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
    this.inboxes.get(replyTo.routing_key)?.push({ body: copy(body), headers: { ...headers } });
  }

  async openReplies(oid: string): Promise<ReplyInbox> {
    const inbox = new ReplyBuffer();
    this.inboxes.set(oid, inbox);
    return {
      next: (idleMs) => inbox.next(idleMs),
      close: async () => {
        if (this.inboxes.get(oid) === inbox) this.inboxes.delete(oid);
        inbox.release();
      },
    };
  }

  async close(): Promise<void> {
    // Shared by URL within the process: listeners and inboxes end themselves.
  }
}
