// The JSON codec for task arguments and results, compatible with kombu's `kombu/utils/json.py`.
// JSON is the only format Fennel decodes, because decoding it executes nothing. Types JSON cannot carry
// travel as kombu's tags `{"__type__": T, "__value__": V}` (Date → datetime, Buffer → bytes/base64) or are
// refused at the call with a SerializationError that names the path to the bad value.
// Speed: most values need no tag, and JSON.stringify writes them as they are; a walk that only checks (no
// copy, no path strings) decides that, and the copying walk, with paths for its errors, runs only when a
// tag is needed or a value is refused.

import { SerializationError } from '../errors.ts';

const TAG = '__type__';
const VALUE = '__value__';
/** Fennel's own tag (never sent to Celery): a chord's header results, left in the result backend. */
const CHORD_RESULTS = 'fennel_chord_results';

/**
 * Stands for the results of chord `groupId`'s `size` header members, in order, as its result backend keeps
 * them: what a chord callback sent between Fennel workers carries instead of the results themselves
 * (src/worker/workflow.ts). On the wire: `{"__type__": "fennel_chord_results", "__value__": {"group_id", "size"}}`.
 */
export class ChordResults {
  constructor(
    readonly groupId: string,
    readonly size: number,
  ) {}
}

/** Fennel's own tag (never sent to Celery): an argument that is another task's result, read by the worker. */
const RESULT_REF = 'fennel_result_ref';

/**
 * Stands for the result of task `taskId`, as its result backend keeps it: what an AsyncResult passed as an
 * argument becomes on the wire (an object reference, Ray's ObjectRef). The call waits, parked in the result
 * backend, until the result is ready; the worker that runs it reads the result just before running it
 * (src/worker/refs.ts). On the wire: `{"__type__": "fennel_result_ref", "__value__": {"task_id": "<id>"}}`.
 */
export class ResultRef {
  constructor(readonly taskId: string) {}
}

/** Python's `datetime.isoformat()` for an aware UTC datetime: microseconds and an explicit `+00:00`. */
export function isoUtc(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new SerializationError('cannot encode an invalid Date');
  // toISOString always ends in ".mmmZ"; Celery writes microseconds and an explicit offset.
  return `${date.toISOString().slice(0, -1)}000+00:00`;
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
      if (value instanceof ChordResults) return { [TAG]: CHORD_RESULTS, [VALUE]: { group_id: value.groupId, size: value.size } };
      if (value instanceof ResultRef) return { [TAG]: RESULT_REF, [VALUE]: { task_id: value.taskId } };
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

/** Nesting deeper than this is left to the copying walk, which tells a cycle from depth. */
const MAX_PLAIN_DEPTH = 100;

/**
 * True if JSON.stringify writes `value` exactly as toJsonValue's copy would be written: only finite numbers,
 * strings, booleans, null, arrays without undefined, and plain objects of those (an undefined property is
 * left out by both). Anything else (a tag to add, a value to refuse) is toJsonValue's to handle.
 */
function isPlain(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object': {
      if (value === null) return true;
      if (depth > MAX_PLAIN_DEPTH) return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          // Numbers and strings inline: a number[] of a million is checked without a call per element.
          if (typeof item === 'number' ? !Number.isFinite(item) : typeof item !== 'string' && !isPlain(item, depth + 1)) return false;
        }
        return true;
      }
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key in value) {
        const item = (value as Record<string, unknown>)[key];
        if (item !== undefined && !isPlain(item, depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/** Encodes a value as JSON text with kombu's type tags. `what` names it in errors ("args", "result"). */
export function encodeJson(value: unknown, what = 'value'): string {
  return JSON.stringify(toJsonData(value, what));
}

/** Plain JSON data with kombu's tags applied, for embedding in a larger document (the value itself if it needs none). */
export function toJsonData(value: unknown, what = 'value'): unknown {
  return isPlain(value, 0) ? value : toJsonValue(value, what, new Set());
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
    case RESULT_REF: {
      const ref = value as { task_id?: unknown } | null;
      if (ref && typeof ref.task_id === 'string') return new ResultRef(ref.task_id);
      break;
    }
    case CHORD_RESULTS: {
      const ref = value as { group_id?: unknown; size?: unknown } | null;
      if (ref && typeof ref.group_id === 'string' && Number.isInteger(ref.size)) return new ChordResults(ref.group_id, ref.size as number);
      break;
    }
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
