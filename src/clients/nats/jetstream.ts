// JetStream for the nats:// transport (transports/nats.ts): the client's enums and helpers re-exported (only
// src/clients/ imports a client library's values), and the few steps of the JetStream wire protocol the client's
// consumer API does not offer in the shape a Fennel consumer needs:
//   - pullNoWait(): one pull request with `no_wait`: the server hands out what is available now, up to `batch`,
//     then ends the request with a 404 (nothing) or 408 (fewer than asked) status. The client's fetch() has no
//     no_wait: its requests stay open on the server until `expires`, and a message the server sends to a request
//     the client stopped reading is held by nobody until its ack wait lapses (then redelivered, marked so).
//   - ackMeta(): what the `$JS.ACK.…` reply subject of a delivered message says (deliveries, stream sequence).
//   - settle(): "+ACK", "-NAK", "+TERM" sent as a request, so it resolves once the server has applied it;
//     acknowledge() ("+ACK") and inProgress() ("+WPI": the ack wait starts again) are fire and forget.
//   - publishStored() and getStored(): a publish to a stream resolved on its PubAck, and a message read from a
//     stream, as the client's js.publish() and jsm.streams.getMessage() do, on the connection's Replies
//     (requests.ts: without the client's per-request Error and timer, a tenth of a worker's CPU).
// Every wait is bounded by `timeoutMs`; a server that does not answer is an error, never a hang.

import { createInbox, headers, nanos, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { JetStreamApiError } from '@nats-io/jetstream';
import type { Replies } from './requests.ts';

export { AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
export { headers, nanos };
export type { Msg, MsgHdrs };

/** JetStream's API error for a publish whose `Nats-Expected-Last-Subject-Sequence` did not hold ("wrong last sequence"). */
const WRONG_LAST_SEQUENCE = 10071;
/** JetStream API errors for a stream, consumer or message that does not exist. */
const NOT_FOUND = new Set([10059, 10014, 10037]);
/** JetStream's API error for a message read that found none. */
const NO_MESSAGE_FOUND = 10037;

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
 * not exist, and with an Error when the server does not end the request within `timeoutMs`. An inbox of its own, not
 * the connection's Replies: a delivered message carries its stream subject, not the inbox it was sent to.
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

/** What a stream said of a message published to it (its PubAck). */
export interface Stored {
  seq: number;
  /** The stream had a message with this Nats-Msg-Id within its duplicate window, and dropped this one. */
  duplicate: boolean;
}

/**
 * Publishes to a stream's subject and resolves with its PubAck (the stream has the message, on a quorum of replicas
 * in a cluster). A refusal (an expected last sequence that did not hold, …) is the client's JetStreamApiError, so
 * isWrongLastSequence() and isNoResponders() read it as they read the client's own publish.
 */
export async function publishStored(replies: Replies, subject: string, payload: Uint8Array | string, timeoutMs: number, msgHeaders?: MsgHdrs): Promise<Stored> {
  const reply = await replies.request(subject, payload, timeoutMs, msgHeaders);
  const ack = apiReply(reply) as { seq?: unknown; duplicate?: unknown };
  if (typeof ack.seq !== 'number') throw new Error(`the server's reply to a publish to ${subject} is not a PubAck: ${reply.string().slice(0, 200)}`);
  return { seq: ack.seq, duplicate: ack.duplicate === true };
}

/** A message as a stream keeps it (STREAM.MSG.GET): its subject, sequence, headers' text and data. */
export interface StoredMessage {
  subject: string;
  seq: number;
  time: Date;
  /** The headers block as text ('' for none): `NATS/1.0\r\nName: value\r\n…`. */
  headerText: string;
  data: Uint8Array;
}

/** STREAM.MSG.GET from the stream's leader; null when the stream has no such message. */
export async function getStored(replies: Replies, stream: string, query: { last_by_subj: string } | { seq: number }, timeoutMs: number): Promise<StoredMessage | null> {
  const reply = await replies.request(`$JS.API.STREAM.MSG.GET.${stream}`, JSON.stringify(query), timeoutMs);
  // A miss is the common case of some reads (a key nobody wrote): answered without building an error.
  const body = JSON.parse(reply.string()) as { error?: ApiError; message?: { subject: string; seq: number; time: string; hdrs?: string; data?: string } };
  if (body.error) {
    if (body.error.err_code === NO_MESSAGE_FOUND) return null;
    throw new JetStreamApiError(body.error);
  }
  const m = body.message;
  if (!m) throw new Error(`the server's reply to a read of ${stream} holds no message: ${reply.string().slice(0, 200)}`);
  return { subject: m.subject, seq: m.seq, time: new Date(m.time), headerText: m.hdrs ? Buffer.from(m.hdrs, 'base64').toString('utf8') : '', data: m.data ? new Uint8Array(Buffer.from(m.data, 'base64')) : new Uint8Array(0) };
}

/** A JetStream API reply's JSON; its `error` thrown as the client's JetStreamApiError. */
interface ApiError {
  code: number;
  err_code: number;
  description: string;
}

function apiReply(reply: Msg): Record<string, unknown> {
  const body = JSON.parse(reply.string()) as { error?: ApiError };
  if (body.error) throw new JetStreamApiError(body.error);
  return body;
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
export async function settle(replies: Replies, reply: string, verb: AckVerb, timeoutMs: number): Promise<void> {
  await replies.request(reply, verb, timeoutMs);
}

/** "+ACK" without waiting for the server to confirm it (a lost one: the message is handed out again after its ack wait). */
export function acknowledge(nc: NatsConnection, reply: string): void {
  nc.publish(reply, '+ACK');
}

/** Restarts the ack wait of the message (fire and forget: a lost one is sent again at the next renewal). */
export function inProgress(nc: NatsConnection, reply: string): void {
  nc.publish(reply, '+WPI');
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

/** What Fennel needs of a stream it uses: its retention and the subjects it must hold. */
export interface StreamNeeds {
  retention: 'limits' | 'workqueue';
  subjects: readonly string[];
}

/**
 * Why a stream that exists cannot serve as `needs` says (made by someone else, or by another program under the
 * same name), or undefined if it can. Limits (max age, size, replicas) are left as they are: they are the owner's.
 */
export function streamMismatch(config: { retention?: string; subjects?: string[]; mirror?: unknown; sources?: unknown[]; sealed?: boolean; deny_purge?: boolean }, needs: StreamNeeds): string | undefined {
  if (config.retention !== needs.retention) return `its retention is '${config.retention}', and Fennel needs '${needs.retention}'`;
  const missing = needs.subjects.filter((subject) => !(config.subjects ?? []).includes(subject));
  if (missing.length > 0) return `its subjects are ${JSON.stringify(config.subjects ?? [])}, without ${missing.map((m) => `'${m}'`).join(', ')}`;
  if (config.mirror) return 'it is a mirror of another stream (read-only)';
  if (config.sealed) return 'it is sealed (read-only)';
  if (config.deny_purge) return 'it denies purges (deny_purge), which Fennel uses to delete what it is done with';
  return undefined;
}

/** What Fennel needs of a queue's (or the scheduler's) durable consumer: a pull consumer of this filter, acked one by one, never giving up on a message. */
export function consumerMismatch(config: { ack_policy?: string; filter_subject?: string; deliver_subject?: string; max_deliver?: number; deliver_policy?: string }, filter: string): string | undefined {
  if (config.deliver_subject) return `it is a push consumer (deliver_subject '${config.deliver_subject}'); Fennel pulls`;
  if (config.ack_policy !== 'explicit') return `its ack_policy is '${config.ack_policy}', and Fennel needs 'explicit' (a message is acked once its outcome is stored)`;
  if (config.filter_subject !== filter) return `its filter_subject is '${config.filter_subject ?? ''}', and Fennel needs '${filter}'`;
  if (config.max_deliver !== undefined && config.max_deliver > 0) return `its max_deliver is ${config.max_deliver}: the server would drop a message after that many deliveries, with no dead letter (Fennel counts deliveries itself)`;
  if (config.deliver_policy !== undefined && config.deliver_policy !== 'all') return `its deliver_policy is '${config.deliver_policy}', and Fennel needs 'all'`;
  return undefined;
}
