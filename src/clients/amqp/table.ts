// Header tables as py-amqp (Celery's AMQP client) reads them. amqplib guesses an integer's field type from its
// value, and writes one from 128 to 32767 with the tag 's', a signed 16-bit integer in RabbitMQ's reading of AMQP
// 0-9-1; py-amqp reads 's' as a short string (the 0-9-1 spec's own table), so a Celery worker given such a header
// (a pidbox `clock` of 128, a `timelimit` of 300 s, a `retries` of 200) misreads it, or dies decoding it. Such
// integers are written here as 'I' (signed 32-bit) or 'l' (signed 64-bit), which both clients read alike; small
// integers ('b'), floats ('d') and everything else are left to amqplib.

type Typed = { '!': 'int' | 'long'; value: number };

function typed(value: number): Typed {
  return { '!': value >= -0x80000000 && value < 0x80000000 ? 'int' : 'long', value };
}

/** True if amqplib would write `value` with the tag 's' (an integer it guesses is a short). */
function isShortGuess(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && (value >= 128 || value < -128);
}

/** Whether anything in `value` (a table, an array, nested) needs typing: the common case copies nothing. */
function needsTyping(value: unknown): boolean {
  if (isShortGuess(value)) return true;
  if (Array.isArray(value)) return value.some(needsTyping);
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value) && !Object.hasOwn(value, '!')) return Object.values(value).some(needsTyping);
  return false;
}

function retype(value: unknown): unknown {
  if (isShortGuess(value)) return typed(value);
  if (Array.isArray(value)) return value.map(retype);
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value) && !Object.hasOwn(value, '!')) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, retype(v)]));
  return value;
}

/** `headers` with every integer amqplib would write as a 16-bit 's' typed as 'I' or 'l'; the same object when none is. */
export function amqpTable(headers: Record<string, unknown>): Record<string, unknown> {
  return needsTyping(headers) ? (retype(headers) as Record<string, unknown>) : headers;
}
