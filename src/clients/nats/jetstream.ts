// JetStream for the nats:// transport (transports/nats.ts): the client's enums and helpers re-exported (only
// src/clients/ imports a client library's values), and the few steps of the JetStream wire protocol the client's
// consumer API does not offer in the shape a Fennel consumer needs:
//   - pullNoWait(): one pull request with `no_wait`: the server hands out what is available now, up to `batch`,
//     then ends the request with a 404 (nothing) or 408 (fewer than asked) status. The client's fetch() has no
//     no_wait: its requests stay open on the server until `expires`, and a message the server sends to a request
//     the client stopped reading is held by nobody until its ack wait lapses (then redelivered, marked so).
//   - ackMeta(): what the `$JS.ACK.…` reply subject of a delivered message says (deliveries, stream sequence).
//   - settle(): "+ACK", "-NAK", "+TERM" sent as a request, so it resolves once the server has applied it; "+WPI"
//     (in progress: the ack wait starts again) is fire and forget.
// Every wait is bounded by `timeoutMs`; a server that does not answer is an error, never a hang.

import { createInbox, headers, nanos, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { JetStreamApiError } from '@nats-io/jetstream';

export { AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
export { headers, nanos };
export type { Msg, MsgHdrs };

/** JetStream's API error for a publish whose `Nats-Expected-Last-Subject-Sequence` did not hold ("wrong last sequence"). */
const WRONG_LAST_SEQUENCE = 10071;
/** JetStream API errors for a stream, consumer or message that does not exist. */
const NOT_FOUND = new Set([10059, 10014, 10037]);

export function isWrongLastSequence(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === WRONG_LAST_SEQUENCE;
}

export function isNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && NOT_FOUND.has(error.code);
}

/**
 * True for a request no server answered with a subscription (503 "no responders"), anywhere in `error`'s causes: the
 * client's publish reports it as "jetstream is not enabled", but in a cluster it is mostly a stream with no leader
 * (an election after its leader's node was lost). Nobody received the message, so sending it again makes no copy.
 */
export function isNoResponders(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const check = (e as { isNoResponders?: unknown }).isNoResponders;
    if (typeof check === 'function' && check.call(e) === true) return true;
  }
  return false;
}

/** A pull that could not be served because the consumer is gone (deleted by an operator, or never made). */
export class ConsumerGoneError extends Error {
  constructor(stream: string, consumer: string, why: string) {
    super(`consumer ${consumer} of stream ${stream} is not there (${why})`);
    this.name = 'ConsumerGoneError';
  }
}

/**
 * Asks the durable pull consumer `consumer` of `stream` for up to `batch` messages available now (`no_wait`), and
 * resolves with them once the server has ended the request. Rejects with ConsumerGoneError when the consumer does
 * not exist, and with an Error when the server does not end the request within `timeoutMs`.
 */
export function pullNoWait(nc: NatsConnection, stream: string, consumer: string, batch: number, timeoutMs: number): Promise<Msg[]> {
  return new Promise<Msg[]>((resolve, reject) => {
    const got: Msg[] = [];
    const inbox = createInbox();
    const end = (error?: Error): void => {
      clearTimeout(timer);
      if (!sub.isClosed()) sub.unsubscribe();
      if (error) reject(error);
      else resolve(got);
    };
    const sub = nc.subscribe(inbox, {
      callback: (error, msg) => {
        if (error) return end(error);
        const code = msg.headers?.code ?? 0;
        if (code === 0) {
          got.push(msg);
          if (got.length >= batch) end();
          return;
        }
        if (code === 100) return; // an idle heartbeat: the request goes on
        // 404 No Messages / 408 Request Timeout: the request is over. 409 says why it was cut short.
        const description = msg.headers?.description ?? '';
        if (code === 503) return end(new ConsumerGoneError(stream, consumer, 'no responders'));
        if (code === 409 && /consumer (deleted|not found)/i.test(description)) return end(new ConsumerGoneError(stream, consumer, description));
        end();
      },
    });
    const timer = setTimeout(() => end(new Error(`the server did not answer a pull from ${stream}/${consumer} within ${timeoutMs} ms`)), timeoutMs);
    try {
      nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`, JSON.stringify({ batch, no_wait: true }), { reply: inbox });
    } catch (error) {
      end(error as Error);
    }
  });
}

/**
 * What the reply subject of a delivered JetStream message says: `$JS.ACK.<stream>.<consumer>.<delivered>.<stream
 * seq>.<consumer seq>.<timestamp>.<pending>` (9 tokens), or the form with a domain and an account hash before the
 * stream (12 tokens and more, nats-server 2.10+ may send it).
 */
export function ackMeta(reply: string): { deliveries: number; streamSeq: number } {
  const tokens = reply.split('.');
  const at = tokens.length === 9 ? 4 : 6;
  const deliveries = Number(tokens[at]);
  const streamSeq = Number(tokens[at + 1]);
  if (tokens[0] !== '$JS' || tokens[1] !== 'ACK' || !(deliveries >= 1) || !(streamSeq >= 1)) throw new Error(`'${reply}' is not a JetStream ack subject`);
  return { deliveries, streamSeq };
}

export type AckVerb = '+ACK' | '-NAK' | '+TERM';

/** Sends `verb` for the message whose reply subject is `reply`, and resolves once the server has applied it. */
export async function settle(nc: NatsConnection, reply: string, verb: AckVerb, timeoutMs: number): Promise<void> {
  await nc.request(reply, verb, { timeout: timeoutMs });
}

/** Restarts the ack wait of the message (fire and forget: a lost one is sent again at the next renewal). */
export function inProgress(nc: NatsConnection, reply: string): void {
  nc.publish(reply, '+WPI');
}

/** `-NAK` with a delay: the server hands the message out again after `delayMs`, not before (fire and forget). */
export function nakLater(nc: NatsConnection, reply: string, delayMs: number): void {
  nc.publish(reply, `-NAK ${JSON.stringify({ delay: nanos(Math.max(1, Math.ceil(delayMs))) })}`);
}

/**
 * The text a subject token made by subjectToken() (clients/nats/core.ts) stands for, or undefined if `token` is not
 * one: '__' is '_', '_' and two hex digits one code unit below 0x100, '_u' and four any other; the lone '_' is ''.
 */
export function tokenText(token: string): string | undefined {
  if (token === '_') return '';
  let text = '';
  for (let i = 0; i < token.length; i++) {
    const char = token[i]!;
    if (char !== '_') {
      if (!/[A-Za-z0-9-]/.test(char)) return undefined;
      text += char;
      continue;
    }
    const next = token[i + 1];
    if (next === '_') {
      text += '_';
      i += 1;
    } else if (next === 'u' && /^[0-9a-f]{4}$/.test(token.slice(i + 2, i + 6))) {
      text += String.fromCharCode(parseInt(token.slice(i + 2, i + 6), 16));
      i += 5;
    } else if (/^[0-9a-f]{2}$/.test(token.slice(i + 1, i + 3))) {
      text += String.fromCharCode(parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else return undefined;
  }
  return text;
}
