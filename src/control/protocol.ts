// Celery's remote-control wire format (kombu's pidbox Mailbox, Celery 5): the request a client broadcasts, who it
// addresses, and the reply each addressed worker sends back. Pure: no engine here. The engines' layouts (a fanout
// exchange `celery.pidbox` and a direct one `reply.celery.pidbox` on AMQP; pub/sub and kombu's binding sets on
// Redis) are in docs/pidbox-wire.md, with the captures this module is tested against
// (test/fixtures/celery-pidbox-{redis,amqp}.json, test/unit/control/protocol.test.ts).
//
// A request body: {method, arguments, destination, pattern, matcher} and, when replies are wanted, {ticket,
// reply_to: {exchange, routing_key}}; its headers {clock, expires} (epoch seconds; 0: never). A reply body:
// {<node name>: <result>}, headers {ticket, clock}. A failed command's result is {error: "<text>"}.

import { ProtocolError } from '../errors.ts';

/** The fanout exchange every worker's mailbox is bound to (Celery's `<control_exchange>.pidbox`). */
export const CONTROL_EXCHANGE = 'celery.pidbox';
/** The direct exchange replies go to, routed by the client's oid. */
export const REPLY_EXCHANGE = 'reply.celery.pidbox';
/** How long a client gathers replies, and a request lives, by default (Celery's `timeout=1.0`). */
export const DEFAULT_CONTROL_TIMEOUT_SEC = 1;

/** A worker's mailbox queue: `<node name>.celery.pidbox`. */
export function mailboxQueue(node: string): string {
  return `${node}.${CONTROL_EXCHANGE}`;
}

/** A client's reply queue: `<oid>.reply.celery.pidbox`, bound to REPLY_EXCHANGE with the oid as routing key. */
export function replyQueue(oid: string): string {
  return `${oid}.${REPLY_EXCHANGE}`;
}

export interface ReplyTo {
  exchange: string;
  routing_key: string;
}

export interface ControlRequest {
  method: string;
  arguments: Record<string, unknown>;
  /** Node names, or null for every worker. Celery tests `hostname in destination`: on a string, a substring test. */
  destination: string[] | string | null;
  /** With `matcher`: a node-name pattern ('glob': fnmatch; 'pcre': a regular expression anchored at the start). */
  pattern: string | null;
  matcher: string | null;
  /** Present when replies are wanted (a cast has neither). */
  ticket?: string;
  reply_to?: ReplyTo;
}

export interface ControlHeaders {
  /** The sender's Lamport clock. */
  clock: number;
  /** Epoch seconds after which the request is stale; 0: never. */
  expires: number;
  /** Fennel's, with a signing key: the request's signature (controlSignedText; docs/security.md). */
  fennel_signature?: string;
}

/** What a control request's signature covers: its body as it travels, and when it goes stale. */
export function controlSignedText(body: unknown, expires: unknown): string {
  return JSON.stringify(['fennel-control-v1', body, expires ?? null]);
}

export interface Addressing {
  destination?: readonly string[] | null;
  pattern?: string | null;
  matcher?: 'glob' | 'pcre' | null;
}

/** A request as Celery's Mailbox writes it, in its key order; `reply` (ticket and oid) when replies are wanted. */
export function controlRequest(method: string, args: Record<string, unknown>, addressing: Addressing = {}, reply?: { ticket: string; oid: string }): ControlRequest {
  const request: ControlRequest = {
    method,
    arguments: args,
    destination: addressing.destination?.length ? [...addressing.destination] : null,
    pattern: addressing.pattern ?? null,
    matcher: addressing.matcher ?? null,
  };
  if (reply) {
    request.ticket = reply.ticket;
    request.reply_to = { exchange: REPLY_EXCHANGE, routing_key: reply.oid };
  }
  return request;
}

/** A request's headers: the clock, and when it goes stale (`timeoutSec` from now; 0 or less: never). */
export function requestHeaders(clock: number, timeoutSec: number, nowMs = Date.now()): ControlHeaders {
  return { clock, expires: timeoutSec > 0 ? nowMs / 1000 + timeoutSec : 0 };
}

const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

/**
 * Reads a request body (already JSON-decoded). A body a worker cannot act on is a ProtocolError saying why; the
 * caller logs and drops it (a Celery worker on Redis that gets a request without `method` stops listening: Fennel's
 * must not).
 */
export function parseControlRequest(body: unknown): ControlRequest {
  if (!isObject(body)) throw new ProtocolError(`a control request must be a JSON object (got ${describe(body)})`);
  const { method, destination, pattern, matcher, ticket, reply_to: replyTo } = body;
  if (typeof method !== 'string' || method === '') throw new ProtocolError(`a control request needs a method name (got ${describe(method)})`);
  const args = body['arguments'] ?? {};
  if (!isObject(args)) throw new ProtocolError(`control request '${method}': arguments must be an object (got ${describe(args)})`);
  if (!(destination === null || destination === undefined || typeof destination === 'string' || (Array.isArray(destination) && destination.every((d) => typeof d === 'string')))) {
    throw new ProtocolError(`control request '${method}': destination must be a list of node names or null (got ${describe(destination)})`);
  }
  if (!(pattern === null || pattern === undefined || typeof pattern === 'string')) throw new ProtocolError(`control request '${method}': pattern must be a string or null`);
  if (!(matcher === null || matcher === undefined || typeof matcher === 'string')) throw new ProtocolError(`control request '${method}': matcher must be a string or null`);
  const request: ControlRequest = { method, arguments: args, destination: (destination) ?? null, pattern: pattern ?? null, matcher: matcher ?? null };
  if (replyTo !== undefined && replyTo !== null) {
    if (!isObject(replyTo) || typeof replyTo['exchange'] !== 'string' || typeof replyTo['routing_key'] !== 'string') {
      throw new ProtocolError(`control request '${method}': reply_to must be {exchange, routing_key} (got ${describe(replyTo)})`);
    }
    request.reply_to = { exchange: replyTo['exchange'], routing_key: replyTo['routing_key'] };
    if (typeof ticket === 'string') request.ticket = ticket;
  }
  return request;
}

/**
 * Whether `node` runs the request, by kombu's rules (pidbox Node.handle_message): a non-empty destination names
 * the nodes; else a pattern with a matcher selects them; else everyone. An unknown matcher selects no one (kombu
 * raises MatcherNotInstalled; a Fennel worker drops the request).
 */
export function isAddressedTo(request: ControlRequest, node: string): boolean {
  const { destination, pattern, matcher } = request;
  if (destination && destination.length > 0) return destination.includes(node);
  if (pattern && matcher) {
    if (matcher === 'glob') return globToRegExp(pattern).test(node);
    if (matcher === 'pcre') {
      try {
        return new RegExp(`^(?:${pattern})`).test(node);
      } catch {
        return false;
      }
    }
    return false;
  }
  return true;
}

/** Python's fnmatch on a POSIX system (case-sensitive): `*`, `?`, `[seq]`, `[!seq]`; the whole name must match. */
export function globToRegExp(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) out += '\\[';
      else {
        let set = pattern.slice(i + 1, end);
        if (set.startsWith('!')) set = `^${set.slice(1)}`;
        else if (set.startsWith('^')) set = `\\${set}`;
        out += `[${set.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else out += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  return new RegExp(`^${out}$`, 's');
}

/**
 * Fennel's own rule (no Celery worker reads `expires`): a request whose `expires` header has passed is stale and
 * dropped, so a worker that starts later, or reads a backlog, does not run yesterday's shutdown. `expires` is the
 * sender's clock: `skewMs` allows for machines whose clocks differ a little.
 */
export function isStale(headers: Record<string, unknown> | undefined, nowMs = Date.now(), skewMs = 0): boolean {
  const expires = headers?.['expires'];
  return typeof expires === 'number' && expires > 0 && expires * 1000 + skewMs < nowMs;
}

/** A reply body: `{<node>: <result>}`. */
export function controlReply(node: string, result: unknown): Record<string, unknown> {
  return { [node]: result };
}

/** A reply's headers: the request's ticket and the replying worker's clock (never an `expires`). */
export function replyHeaders(ticket: string | undefined, clock: number): Record<string, unknown> {
  return ticket === undefined ? { clock } : { ticket, clock };
}

/** A failed command's result, as Celery's (`{"error": "<text>"}`). */
export function controlError(message: string): { error: string } {
  return { error: message };
}

/**
 * Reads a reply for the request with `ticket`: each node and its result, or undefined for a reply to another
 * request (another ticket) or a stale one (an `expires` header in the past). A reply without a ticket counts as
 * this request's, as Celery's client has it.
 */
export function parseControlReply(body: unknown, headers: Record<string, unknown> | undefined, ticket: string, nowMs = Date.now()): Array<{ node: string; result: unknown }> | undefined {
  const replyTicket = headers?.['ticket'];
  if (replyTicket !== undefined && replyTicket !== ticket) return undefined;
  if (isStale(headers, nowMs)) return undefined;
  if (!isObject(body)) return undefined;
  return Object.entries(body).map(([node, result]) => ({ node, result }));
}

function describe(value: unknown): string {
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return String(value);
  }
}
