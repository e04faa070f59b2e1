// kombu's virtual-transport envelope: the JSON document a Redis list element (and a Fennel SQLite row) holds.
// `{"body", "content-encoding", "content-type", "headers", "properties": {..., "body_encoding"}}`
// (kombu/transport/virtual/base.py `Channel.prepare_message`). Redis uses base64 bodies; SQLite keeps utf-8.

import type { WireMessage, WireProperties } from './message.ts';

export type BodyEncoding = 'base64' | 'utf-8';

export function encodeEnvelope(message: WireMessage, bodyEncoding: BodyEncoding, extra: Partial<WireProperties> = {}): string {
  // Written piece by piece, the same text JSON.stringify gives for the object
  // {body, content-encoding, content-type, headers, properties}: JSON.stringify of the whole would scan and
  // copy the body once more, and a base64 body needs no escaping (its alphabet has no quote or backslash).
  const body = bodyEncoding === 'base64' ? `"${Buffer.from(message.body, 'utf8').toString('base64')}"` : JSON.stringify(message.body);
  const properties = JSON.stringify({ ...message.properties, body_encoding: bodyEncoding, ...extra });
  // JSON.stringify leaves out a member whose value is undefined; so does this.
  const member = (name: string, value: unknown): string => {
    const text = JSON.stringify(value) as string | undefined;
    return text === undefined ? '' : `,${JSON.stringify(name)}:${text}`;
  };
  return `{"body":${body}${member('content-encoding', message.contentEncoding)}${member('content-type', message.contentType)}${member('headers', message.headers)},"properties":${properties}}`;
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
