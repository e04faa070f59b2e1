// The JSON codec for task arguments and results, compatible with kombu's `kombu/utils/json.py`.
// JSON is the only format Fennel decodes, because decoding it executes nothing. Types JSON cannot carry
// travel as kombu's tags `{"__type__": T, "__value__": V}` (Date → datetime, Buffer → bytes/base64) or are
// refused at the call with a SerializationError that names the path to the bad value.

import { SerializationError } from '../errors.ts';

const TAG = '__type__';
const VALUE = '__value__';

/** Python's `datetime.isoformat()` for an aware UTC datetime: microseconds and an explicit `+00:00`. */
export function isoUtc(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new SerializationError('cannot encode an invalid Date');
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000+00:00');
}

/** Parses an ISO 8601 date; one without an offset is UTC, as Celery treats a naive eta. */
export function parseIso(text: string): Date {
  const hasOffset = /(Z|[+-]\d{2}:?\d{2})$/.test(text);
  const withFraction = text.replace(/(\.\d{3})\d+/, '$1'); // JS keeps milliseconds only
  const date = new Date(hasOffset || !text.includes('T') ? withFraction : `${withFraction}Z`);
  if (Number.isNaN(date.getTime())) throw new SerializationError(`not an ISO 8601 date: ${JSON.stringify(text)}`);
  return date;
}

function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return 'a symbol';
  if (typeof value === 'bigint') return 'a BigInt (pass it as a string)';
  if (typeof value === 'number') return `the number ${String(value)} (JSON has no NaN or Infinity)`;
  if (value === undefined) return 'undefined';
  if (value instanceof Map) return 'a Map (pass Object.fromEntries(map) or an array of pairs)';
  if (value instanceof Set) return 'a Set (pass an array)';
  const ctor = (value as object).constructor as { name?: string } | undefined;
  return `an instance of ${ctor?.name ?? 'an unknown class'} (pass a plain object)`;
}

/** Converts a value into plain JSON data, tagging Dates and Buffers; throws on anything JSON cannot carry. */
function toJsonValue(value: unknown, path: string, seen: Set<object>): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new SerializationError(`cannot encode ${path}: ${describe(value)}`);
      return value;
    case 'object': {
      if (value === null) return null;
      if (value instanceof Date) {
        if (Number.isNaN(value.getTime())) throw new SerializationError(`cannot encode ${path}: an invalid Date`);
        return { [TAG]: 'datetime', [VALUE]: isoUtc(value) };
      }
      if (value instanceof Uint8Array) {
        return { [TAG]: 'base64', [VALUE]: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
      }
      if (seen.has(value)) throw new SerializationError(`cannot encode ${path}: it refers to itself (a cycle)`);
      seen.add(value);
      try {
        if (Array.isArray(value)) {
          return value.map((item, i) => {
            if (item === undefined) throw new SerializationError(`cannot encode ${path}[${i}]: undefined inside an array`);
            return toJsonValue(item, `${path}[${i}]`, seen);
          });
        }
        const proto = Object.getPrototypeOf(value) as unknown;
        if (proto !== Object.prototype && proto !== null) {
          throw new SerializationError(`cannot encode ${path}: ${describe(value)}`);
        }
        const out: Record<string, unknown> = {};
        for (const [key, item] of Object.entries(value)) {
          if (item === undefined) continue; // as JSON.stringify does: an absent property
          out[key] = toJsonValue(item, `${path}.${key}`, seen);
        }
        return out;
      } finally {
        seen.delete(value);
      }
    }
    default:
      throw new SerializationError(`cannot encode ${path}: ${describe(value)}`);
  }
}

/** Encodes a value as JSON text with kombu's type tags. `what` names it in errors ("args", "result"). */
export function encodeJson(value: unknown, what = 'value'): string {
  return JSON.stringify(toJsonValue(value, what, new Set()));
}

/** Plain JSON data with kombu's tags applied, for embedding in a larger document. */
export function toJsonData(value: unknown, what = 'value'): unknown {
  return toJsonValue(value, what, new Set());
}

function reviveTag(type: unknown, value: unknown): unknown {
  switch (type) {
    case 'datetime':
    case 'date':
      if (typeof value === 'string') return parseIso(value);
      break;
    case 'time':
    case 'decimal':
      // JS has no time-of-day or decimal type; the exact text is kept rather than rounded into a float.
      if (typeof value === 'string') return value;
      break;
    case 'uuid':
      if (value && typeof value === 'object' && typeof (value as { hex?: unknown }).hex === 'string') {
        const hex = (value as { hex: string }).hex;
        return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
      }
      break;
    case 'bytes':
      if (typeof value === 'string') return Buffer.from(value, 'utf8');
      break;
    case 'base64':
      if (typeof value === 'string') return Buffer.from(value, 'base64');
      break;
  }
  throw new SerializationError(`unsupported JSON type tag ${JSON.stringify(type)}`);
}

/** Decodes JSON text, reviving kombu's type tags. An unknown tag is an error, as it is in kombu. */
export function decodeJson(text: string): unknown {
  if (!text.includes(TAG)) return JSON.parse(text) as unknown; // the common case skips the reviver
  return JSON.parse(text, (_key, value: unknown) => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const keys = Object.keys(value);
      if (keys.length === 2 && TAG in value && VALUE in value) {
        const tagged = value as Record<string, unknown>;
        return reviveTag(tagged[TAG], tagged[VALUE]);
      }
    }
    return value;
  });
}
