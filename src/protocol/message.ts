// Celery message protocol v2 (celery/app/amqp.py `as_task_v2`): building a task message from a call,
// and parsing one from the wire with strict validation. The only code that knows header and property names.
// A message is engine-neutral here; transports/ put it in their own envelope (protocol/envelope.ts).

import { hostname } from 'node:os';
import { z } from 'zod';
import { ProtocolError } from '../errors.ts';
import { decodeJson, encodeJson, isoUtc, parseIso } from './json.ts';
import { markCompactJsonBody } from './envelope.ts';

export const CONTENT_TYPE = 'application/json';
export const CONTENT_ENCODING = 'utf-8';

export interface DeliveryInfo {
  exchange: string;
  routing_key: string;
}

/** AMQP-style message properties, with kombu's snake_case names. */
export interface WireProperties {
  correlation_id?: string;
  reply_to?: string;
  delivery_mode?: number;
  priority?: number;
  delivery_info?: DeliveryInfo;
  expiration?: string;
  [key: string]: unknown;
}

/** One message as it travels: headers, properties and the serialized body text. */
export interface WireMessage {
  headers: Record<string, unknown>;
  properties: WireProperties;
  body: string;
  contentType: string;
  contentEncoding: string;
  /** Set by a transport when the stored envelope itself could not be decoded; `body` then holds the raw text. */
  malformed?: string;
}

/** Celery's `embed` element: callbacks, errbacks, chain (reversed) and chord. */
export interface Embed {
  callbacks: unknown[] | null;
  errbacks: unknown[] | null;
  chain: unknown[] | null;
  chord: unknown | null;
}

/** What a producer asks for; everything the wire needs is derived from it. */
export interface TaskCall {
  id: string;
  name: string;
  args: readonly unknown[];
  kwargs?: Record<string, unknown>;
  queue: string;
  eta?: Date | null;
  expires?: Date | null;
  priority?: number;
  retries?: number;
  timeLimitSec?: number | null;
  softTimeLimitSec?: number | null;
  rootId?: string | null;
  parentId?: string | null;
  group?: string | null;
  groupIndex?: number | null;
  ignoreResult?: boolean;
  replyTo?: string;
  embed?: Partial<Embed>;
  /** Times this message crashed a pool slot (Fennel's own header, `fennel_crashes`; other workers ignore it). */
  crashes?: number;
  /** Published with deduplicate: the header `fennel_dedupe` tells its consumer to free the id when settled. */
  deduplicate?: boolean;
  /**
   * A broadcast (every worker online runs it): the header `fennel_broadcast` tells a Fennel worker to store its
   * outcome under its own result id (protocol/queues.ts `broadcastResultId`), so each worker's result is kept.
   */
  broadcast?: boolean;
}

/** A validated task message, as the worker sees it. */
export interface TaskRequest {
  id: string;
  name: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  embed: Embed;
  retries: number;
  eta: Date | null;
  expires: Date | null;
  timeLimitSec: number | null;
  softTimeLimitSec: number | null;
  rootId: string;
  parentId: string | null;
  group: string | null;
  groupIndex: number | null;
  ignoreResult: boolean;
  origin: string | null;
  replyTo: string | null;
  priority: number;
  queue: string | null;
  /** Times this message has crashed a pool slot (poison-message detection). */
  crashes: number;
  /** Length of the encoded body (args, kwargs, embed), in characters. */
  bodyLength: number;
}

const ORIGIN = `gen${process.pid}@${hostname()}`;
const REPR_MAX = 1024; // Celery's argsrepr_maxsize

function repr(text: string): string {
  return text.length > REPR_MAX ? `${text.slice(0, REPR_MAX - 3)}...` : text;
}

/**
 * `repr(\`(${argsJson.slice(1, -1)})\`)` without building the whole parenthesised text first: for a large
 * argument (a 0.67 MB chunk) that copy cost more than the rest of the headers. Same characters.
 */
function argsRepr(argsJson: string): string {
  // The parenthesised text has argsJson's length: '[' and ']' become '(' and ')'.
  if (argsJson.length <= REPR_MAX) return `(${argsJson.slice(1, -1)})`;
  return `(${argsJson.slice(1, REPR_MAX - 3)}...`;
}

/** Builds the protocol v2 message for a call. Throws SerializationError for arguments JSON cannot carry. */
export function buildTaskMessage(call: TaskCall): WireMessage {
  const kwargs = call.kwargs ?? {};
  const argsJson = encodeJson(call.args, 'args');
  const kwargsJson = encodeJson(kwargs, 'kwargs');
  const embed: Embed = { callbacks: null, errbacks: null, chain: null, chord: null, ...call.embed };
  const expires = call.expires ? isoUtc(call.expires) : null;
  // Header order follows what Celery 5.6 emits (CELERY-WIRE.md A.1), so captures diff cleanly.
  const headers: Record<string, unknown> = {
    lang: 'js',
    task: call.name,
    id: call.id,
    shadow: null,
    eta: call.eta ? isoUtc(call.eta) : null,
    expires,
    group: call.group ?? null,
    group_index: call.groupIndex ?? null,
    retries: call.retries ?? 0,
    timelimit: [call.timeLimitSec ?? null, call.softTimeLimitSec ?? null], // [hard, soft], as Celery's code has it
    root_id: call.rootId ?? call.id,
    parent_id: call.parentId ?? null,
    argsrepr: argsRepr(argsJson),
    kwargsrepr: repr(kwargsJson),
    origin: ORIGIN,
    ignore_result: call.ignoreResult ?? false,
    replaced_task_nesting: 0,
    stamped_headers: null,
    stamps: {},
    ...(call.crashes ? { fennel_crashes: call.crashes } : {}),
    ...(call.deduplicate ? { fennel_dedupe: true } : {}),
    ...(call.broadcast ? { fennel_broadcast: true } : {}),
  };
  const properties: WireProperties = {
    correlation_id: call.id,
    reply_to: call.replyTo ?? '',
    delivery_mode: 2,
    delivery_info: { exchange: '', routing_key: call.queue },
    priority: call.priority ?? 0,
  };
  if (call.expires) {
    // kombu turns `expires` into a per-message TTL in milliseconds, as a string (RabbitMQ enforces it).
    properties.expiration = String(Math.max(0, call.expires.getTime() - Date.now()));
  }
  // JSON.stringify's texts joined: the envelope may quote it by escaping its quotes alone (envelope.ts).
  return markCompactJsonBody({
    headers,
    properties,
    body: `[${argsJson},${kwargsJson},${encodeJson(embed, 'embed')}]`,
    contentType: CONTENT_TYPE,
    contentEncoding: CONTENT_ENCODING,
  });
}

const nullableString = z.string().nullish().transform((v) => v ?? null);
const nullableNumber = z.number().nullish().transform((v) => v ?? null);
const isoDate = z
  .string()
  .nullish()
  .transform((v, ctx) => {
    if (v == null) return null;
    try {
      return parseIso(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: `not an ISO 8601 date: ${v}` });
      return z.NEVER;
    }
  });

// Only `task` and `id` are required (Celery 5.6 accepts `lang`, `task`, `id`; Fennel does not need `lang`).
export const headersSchema = z.object({
  task: z.string().min(1),
  id: z.string().min(1),
  retries: z.number().int().min(0).nullish(),
  eta: isoDate,
  expires: isoDate,
  timelimit: z.tuple([nullableNumber, nullableNumber]).nullish(),
  root_id: nullableString,
  parent_id: nullableString,
  group: nullableString,
  group_index: nullableNumber,
  ignore_result: z.boolean().nullish(),
  origin: nullableString,
});

export const embedSchema = z
  .object({
    callbacks: z.array(z.unknown()).nullish(),
    errbacks: z.array(z.unknown()).nullish(),
    chain: z.array(z.unknown()).nullish(),
    chord: z.unknown().nullish(),
  })
  .nullish();

function issuesText(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

type Headers = z.output<typeof headersSchema>;

const isNullableString = (v: unknown): v is string | null | undefined => v == null || typeof v === 'string';
const isNullableNumber = (v: unknown): v is number | null | undefined => v == null || typeof v === 'number';

/** An ISO date header as the schema reads it; undefined if the text is not a date (the schema then says so). */
function plainDate(v: unknown): Date | null | undefined {
  if (v == null) return null;
  if (typeof v !== 'string') return undefined;
  try {
    return parseIso(v);
  } catch {
    return undefined;
  }
}

/**
 * The headers of the common message, read without zod: every header is absent, null or of its plain type.
 * Anything else (a wrong type, a bad date, a timelimit that is not a pair) returns undefined and goes to
 * the schema, which accepts or names what is wrong. This accepts only messages the schema accepts, with the
 * same result (message.test.ts runs both on the same headers); it exists because the schema cost a worker
 * about a tenth of its CPU per no-op task, and most of its allocations.
 */
export function plainHeaders(h: Record<string, unknown>): Headers | undefined {
  const { task, id, retries, timelimit, root_id, parent_id, group, group_index, ignore_result, origin } = h;
  if (typeof task !== 'string' || task === '' || typeof id !== 'string' || id === '') return undefined;
  if (retries != null && !(Number.isInteger(retries) && (retries as number) >= 0)) return undefined;
  if (timelimit != null && !(Array.isArray(timelimit) && timelimit.length === 2 && isNullableNumber(timelimit[0]) && isNullableNumber(timelimit[1]))) return undefined;
  if (!isNullableString(root_id) || !isNullableString(parent_id) || !isNullableString(group) || !isNullableString(origin)) return undefined;
  if (!isNullableNumber(group_index) || !(ignore_result == null || typeof ignore_result === 'boolean')) return undefined;
  const eta = plainDate(h['eta']);
  const expires = plainDate(h['expires']);
  if (eta === undefined || expires === undefined) return undefined;
  return {
    task,
    id,
    retries: retries as number | null | undefined,
    eta,
    expires,
    timelimit: timelimit == null ? timelimit : [timelimit[0] ?? null, timelimit[1] ?? null],
    root_id: root_id ?? null,
    parent_id: parent_id ?? null,
    group: group ?? null,
    group_index: group_index ?? null,
    ignore_result,
    origin: origin ?? null,
  };
}

/** The embed of the common message (null, or lists where lists go), read without zod; undefined otherwise. */
export function plainEmbed(e: unknown): Embed | undefined {
  if (e == null) return { callbacks: null, errbacks: null, chain: null, chord: null };
  if (typeof e !== 'object' || Array.isArray(e)) return undefined;
  const { callbacks, errbacks, chain, chord } = e as Record<string, unknown>;
  const isList = (v: unknown): v is unknown[] | null | undefined => v == null || Array.isArray(v);
  if (!isList(callbacks) || !isList(errbacks) || !isList(chain)) return undefined;
  return { callbacks: callbacks ?? null, errbacks: errbacks ?? null, chain: chain ?? null, chord: chord ?? null };
}

/** The headers, validated: the plain reading when it applies, else the schema's. Throws ProtocolError. */
function readHeaders(headers: Record<string, unknown>): Headers {
  const plain = plainHeaders(headers);
  if (plain) return plain;
  const parsed = headersSchema.safeParse(headers);
  if (!parsed.success) throw new ProtocolError(`bad headers: ${issuesText(parsed.error)}`);
  return parsed.data;
}

/** The embed, validated: the plain reading when it applies, else the schema's. Throws ProtocolError. */
function readEmbed(raw: unknown): Embed {
  const plain = plainEmbed(raw);
  if (plain) return plain;
  const parsed = embedSchema.safeParse(raw);
  if (!parsed.success) throw new ProtocolError(`bad embed: ${issuesText(parsed.error)}`);
  return { callbacks: parsed.data?.callbacks ?? null, errbacks: parsed.data?.errbacks ?? null, chain: parsed.data?.chain ?? null, chord: parsed.data?.chord ?? null };
}

/** Parses and validates a task message. Throws ProtocolError naming what is wrong. */
export function parseTaskMessage(message: WireMessage): TaskRequest {
  if (message.malformed) throw new ProtocolError(`undecodable envelope: ${message.malformed}`);
  if (message.contentType !== CONTENT_TYPE) {
    throw new ProtocolError(`content type ${JSON.stringify(message.contentType)} is not accepted; only ${CONTENT_TYPE} is`);
  }
  const h = readHeaders(message.headers);
  let body: unknown;
  try {
    body = decodeJson(message.body);
  } catch (error) {
    throw new ProtocolError(`body is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  // A two-element body crashes a Celery worker on every restart (CELERY-WIRE.md 2.1.8); here it is refused.
  if (!Array.isArray(body) || body.length !== 3) {
    throw new ProtocolError('body must be a three-element array [args, kwargs, embed]');
  }
  const [args, kwargs, rawEmbed] = body as [unknown, unknown, unknown];
  if (!Array.isArray(args)) throw new ProtocolError('body[0] (args) must be an array');
  if (kwargs === null || typeof kwargs !== 'object' || Array.isArray(kwargs)) {
    throw new ProtocolError('body[1] (kwargs) must be an object');
  }
  const embed = readEmbed(rawEmbed);
  const props = message.properties;
  return {
    id: h.id,
    name: h.task,
    args,
    kwargs: kwargs as Record<string, unknown>,
    embed,
    retries: h.retries ?? 0,
    eta: h.eta,
    expires: h.expires,
    timeLimitSec: h.timelimit?.[0] ?? null,
    softTimeLimitSec: h.timelimit?.[1] ?? null,
    rootId: h.root_id ?? h.id,
    parentId: h.parent_id,
    group: h.group,
    groupIndex: h.group_index,
    ignoreResult: h.ignore_result ?? false,
    origin: h.origin,
    replyTo: typeof props.reply_to === 'string' && props.reply_to !== '' ? props.reply_to : null,
    priority: typeof props.priority === 'number' ? props.priority : 0,
    queue: props.delivery_info?.routing_key ?? null,
    crashes: typeof message.headers['fennel_crashes'] === 'number' ? message.headers['fennel_crashes'] : 0,
    bodyLength: message.body.length,
  };
}

/** The message that runs a request again: same id, `retries + 1`, a new eta. Used by retries. */
export function buildRetryMessage(request: TaskRequest, eta: Date | null, queue: string, next: { retries: number; crashes: number } = { retries: request.retries + 1, crashes: request.crashes }): WireMessage {
  return buildTaskMessage({
    id: request.id,
    name: request.name,
    args: request.args,
    kwargs: request.kwargs,
    queue,
    eta,
    expires: request.expires,
    priority: request.priority,
    retries: next.retries,
    crashes: next.crashes,
    timeLimitSec: request.timeLimitSec,
    softTimeLimitSec: request.softTimeLimitSec,
    rootId: request.rootId,
    parentId: request.parentId,
    group: request.group,
    groupIndex: request.groupIndex,
    ignoreResult: request.ignoreResult,
    ...(request.replyTo ? { replyTo: request.replyTo } : {}),
    embed: request.embed,
  });
}

/** Size in bytes of a message's body (args, kwargs, embed), which the payload limit applies to. */
export function bodyBytes(message: WireMessage): number {
  return Buffer.byteLength(message.body);
}
