// The client side of remote control, written once above the mailbox engines: open a reply queue, broadcast the
// request, gather the replies to its ticket until every addressed node has answered or the time is up, and name
// the destinations that did not answer. Celery's client stops at the first idle second instead (docs/pidbox-wire.md
// §7), which can run past its timeout; here `timeoutMs` is a deadline, so `fennel inspect --timeout 1000` takes at
// most about a second.

import { randomUUID } from 'node:crypto';
import type { MailboxEngine } from './mailbox.ts';
import { controlRequest, controlSignedText, DEFAULT_CONTROL_TIMEOUT_SEC, parseControlReply, requestHeaders, type Addressing } from './protocol.ts';
import type { Signer } from '../protocol/signing.ts';

export interface ControlCall extends Addressing {
  method: string;
  arguments?: Record<string, unknown>;
  /** How long replies are gathered, and how long the request lives (ms). Default 1000 (Celery's 1 s). */
  timeoutMs?: number;
  /** Stop after this many replies. Default: one per destination when there are destinations, else none. */
  limit?: number;
  /** False: a cast, nobody replies (Celery's `reply=False`). Default true. */
  reply?: boolean;
}

export interface ControlOutcome {
  /** Each reply, in arrival order: the node and its result (`{ error }` for a command that failed there). */
  replies: Array<{ node: string; result: unknown }>;
  /** Destinations that did not answer in time (empty when the call named none). */
  missing: string[];
}

/** Sends one control request and gathers its replies. `clock` is the sender's Lamport clock, for the header. */
export async function sendControl(engine: MailboxEngine, call: ControlCall, clock = 0, signer?: Signer): Promise<ControlOutcome> {
  const timeoutMs = call.timeoutMs ?? DEFAULT_CONTROL_TIMEOUT_SEC * 1000;
  const wantsReply = call.reply ?? true;
  const oid = randomUUID();
  const ticket = randomUUID();
  const inbox = wantsReply ? await engine.openReplies(oid) : undefined;
  // A node named twice is one node: it answers once, and the gathering must not wait for a second reply.
  const destination = call.destination ? [...new Set(call.destination)] : null;
  try {
    const request = controlRequest(call.method, call.arguments ?? {}, { ...call, destination }, wantsReply ? { ticket, oid } : undefined);
    const headers = requestHeaders(clock, timeoutMs / 1000);
    // With a key, workers that hold it act only on signed requests (a forged shutdown is dropped).
    if (signer) headers.fennel_signature = signer.signText(controlSignedText(request, headers.expires));
    await engine.broadcast(request, headers);
    const replies: ControlOutcome['replies'] = [];
    if (inbox) {
      const limit = call.limit ?? (destination?.length ? destination.length : Infinity);
      const deadline = Date.now() + timeoutMs;
      while (replies.length < limit) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const reply = await inbox.next(left);
        if (!reply) break;
        replies.push(...(parseControlReply(reply.body, reply.headers, ticket) ?? []));
      }
    }
    const answered = new Set(replies.map((r) => r.node));
    return { replies, missing: (destination ?? []).filter((node) => !answered.has(node)) };
  } finally {
    await inbox?.close();
  }
}
