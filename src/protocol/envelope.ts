// kombu's virtual-transport envelope: the JSON document a Redis list element (and a Fennel SQLite row) holds.
// `{"body", "content-encoding", "content-type", "headers", "properties": {..., "body_encoding"}}`
// (kombu/transport/virtual/base.py `Channel.prepare_message`). Redis uses base64 bodies; SQLite keeps utf-8.
// Encoding is on every publish, so it is written to allocate little; its text is exactly JSON.stringify's.

import type { WireMessage, WireProperties } from './message.ts';

export type BodyEncoding = 'base64' | 'utf-8';

const NO_EXTRA: Partial<WireProperties> = {};

/**
 * The text JSON.stringify gives for `{body, 'content-encoding', 'content-type', headers, properties: {...properties,
 * body_encoding, ...extra}}`, written piece by piece: stringifying the whole would scan and copy the body once
 * more (a base64 body needs no escaping: its alphabet has no quote or backslash), and the merged properties
 * object would be garbage as soon as it was written.
 */
export function encodeEnvelope(message: WireMessage, bodyEncoding: BodyEncoding, extra: Partial<WireProperties> = NO_EXTRA): string {
  const body = bodyEncoding === 'base64' ? `"${base64Utf8(message.body)}"` : quotedBody(message);
  return `{"body":${body}${member(',"content-encoding":', message.contentEncoding)}${member(',"content-type":', message.contentType)}${member(',"headers":', message.headers)},"properties":${propertiesJson(message.properties, bodyEncoding, extra)}}`;
}

/**
 * Messages whose body JSON.stringify wrote (buildTaskMessage's): such a text holds no control character and no lone
 * surrogate, so quoting it as a JSON string only escapes its quotes and backslashes. A copy of the message is not in
 * here, nor is a body read from a broker, which may hold anything.
 */
const compactJsonBodies = new WeakSet<WireMessage>();

/** Marks `message.body` as JSON.stringify's output (see compactJsonBodies). */
export function markCompactJsonBody<M extends WireMessage>(message: M): M {
  compactJsonBodies.add(message);
  return message;
}

/** From this length a marked body is quoted by escaping its quotes and backslashes, if it has few. */
const FAST_QUOTE_MIN = 64 * 1024;
/** replaceAll builds its result from the pieces between matches: quick for a few, slower than JSON.stringify for many. */
const FAST_QUOTE_MAX_SPECIALS = 256;

/**
 * JSON.stringify(message.body). Node 20's JSON.stringify writes a long string at about 5 ns a character: 28 ms for a
 * 6.7 MB body (a chunk of 1,250,000 packed integers), which escaping its dozen quotes does in well under a millisecond.
 */
function quotedBody(message: WireMessage): string {
  const body = message.body;
  if (body.length < FAST_QUOTE_MIN || !compactJsonBodies.has(message)) return JSON.stringify(body);
  let specials = 0;
  for (const special of ['"', '\\']) {
    for (let at = body.indexOf(special); at !== -1; at = body.indexOf(special, at + 1)) {
      if (++specials > FAST_QUOTE_MAX_SPECIALS) return JSON.stringify(body);
    }
  }
  return `"${body.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

/** `prefix` and the value's JSON, or nothing for a value JSON.stringify leaves out of an object (undefined). */
function member(prefix: string, value: unknown): string {
  const text = JSON.stringify(value) as string | undefined;
  return text === undefined ? '' : prefix + text;
}

// The utf-8 bytes of a body on their way to base64 go through one reused buffer: a Buffer per message was a
// fifth of what a producer allocated per task. A UTF-16 code unit takes at most 3 bytes of utf-8, so a text of
// up to a third of its size always fits; a longer one gets a buffer of its own.
const scratch = Buffer.allocUnsafeSlow(48 * 1024);

function base64Utf8(text: string): string {
  if (text.length * 3 > scratch.length) return Buffer.from(text, 'utf8').toString('base64');
  return scratch.toString('base64', 0, scratch.write(text, 0, 'utf8'));
}

/**
 * JSON of `{...properties, body_encoding, ...extra}`. When those members are all new keys they come last, in
 * that order, so they are appended to the JSON of `properties` without making the merged object. Anything
 * that could reorder or rewrite members (a key already present, an integer-like key, which JSON puts first,
 * a value with a toJSON, a toJSON on the properties) takes the object route instead.
 */
function propertiesJson(properties: WireProperties, bodyEncoding: BodyEncoding, extra: Partial<WireProperties>): string {
  if ('toJSON' in properties || Array.isArray(properties) || Object.hasOwn(properties, 'body_encoding')) return mergedJson(properties, bodyEncoding, extra);
  let tail = `"body_encoding":${JSON.stringify(bodyEncoding)}`;
  for (const key in extra) {
    if (!Object.hasOwn(extra, key)) continue;
    const value = extra[key];
    if (!appendsAsIs(key, value, properties)) return mergedJson(properties, bodyEncoding, extra);
    if (value !== undefined) tail += `,${JSON.stringify(key)}:${JSON.stringify(value)}`;
  }
  const own = JSON.stringify(properties);
  return own === '{}' ? `{${tail}}` : `${own.slice(0, -1)},${tail}}`;
}

/** True if the merged object has this extra member last, and JSON writes its value as it writes it alone. */
function appendsAsIs(key: string, value: unknown, properties: WireProperties): boolean {
  // Array-index keys go first in an object (a leading digit is enough to take the safe route).
  const c = key.charCodeAt(0);
  if (key === 'body_encoding' || (c >= 48 && c <= 57) || Object.hasOwn(properties, key)) return false;
  return value === undefined || value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

function mergedJson(properties: WireProperties, bodyEncoding: BodyEncoding, extra: Partial<WireProperties>): string {
  return JSON.stringify({ ...properties, body_encoding: bodyEncoding, ...extra });
}

/** Never throws: a document that is not an envelope comes back with `malformed` set and the raw text as body. */
export function decodeEnvelope(raw: string): WireMessage {
  const bad = (why: string): WireMessage => ({
    headers: {},
    properties: {},
    body: raw,
    contentType: 'application/octet-stream',
    contentEncoding: 'binary',
    malformed: why,
  });
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch (error) {
    return bad(`not JSON: ${(error as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return bad('not a JSON object');
  const env = doc as Record<string, unknown>;
  const properties = env['properties'];
  const headers = env['headers'];
  if (typeof env['body'] !== 'string') return bad('no string "body"');
  if (properties === null || typeof properties !== 'object' || Array.isArray(properties)) return bad('no "properties" object');
  if (headers != null && (typeof headers !== 'object' || Array.isArray(headers))) return bad('"headers" is not an object');
  const props = properties as WireProperties;
  let body = env['body'];
  if (props['body_encoding'] === 'base64') body = Buffer.from(body, 'base64').toString('utf8');
  return {
    headers: (headers as Record<string, unknown> | null) ?? {},
    properties: props,
    body,
    contentType: typeof env['content-type'] === 'string' ? env['content-type'] : 'application/octet-stream',
    contentEncoding: typeof env['content-encoding'] === 'string' ? env['content-encoding'] : 'binary',
  };
}
