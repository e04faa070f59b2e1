// How an error becomes an HTTP answer. One place, so every route and fastify's own errors (bad JSON, body too
// large) answer alike: `{ error: <what was wrong and what to do>, code }`.

import { BrokerUnavailableError, ClosedError, ConfigError, PayloadTooLargeError, SerializationError, TimeoutError } from '../index.ts';

/** Seconds a client should wait before trying again when the broker cannot be reached. */
export const RETRY_AFTER_SEC = 5;

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly code: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function brokerDown(message: string): HttpError {
  return new HttpError(503, `${message}; try again in ${RETRY_AFTER_SEC} s`, 'BROKER_UNAVAILABLE', { 'retry-after': String(RETRY_AFTER_SEC) });
}

/** Maps an error thrown while serving a request to status, body and headers. Unknown errors are 500 without details. */
export function toHttp(error: unknown): { status: number; body: { error: string; code: string }; headers: Record<string, string> } {
  if (error instanceof HttpError) return { status: error.statusCode, body: { error: error.message, code: error.code }, headers: error.headers };
  if (error instanceof PayloadTooLargeError) return { status: 413, body: { error: error.message, code: error.code }, headers: {} };
  if (error instanceof SerializationError || error instanceof ConfigError) return { status: 400, body: { error: error.message, code: error.code }, headers: {} };
  if (error instanceof BrokerUnavailableError || error instanceof ClosedError || error instanceof TimeoutError) {
    const down = brokerDown(`broker unavailable: ${error.message}`);
    return { status: 503, body: { error: down.message, code: down.code }, headers: down.headers };
  }
  // fastify's own client errors: FST_ERR_CTP_INVALID_JSON (400), FST_ERR_CTP_BODY_TOO_LARGE (413), 415, …
  const e = error as { statusCode?: unknown; code?: unknown; message?: unknown };
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    const reason = typeof e.code === 'string' && e.code.startsWith('FST_ERR_CTP_INVALID_JSON') ? `malformed JSON: ${String(e.message)}` : String(e.message);
    return { status: e.statusCode, body: { error: reason, code: typeof e.code === 'string' ? e.code : 'BAD_REQUEST' }, headers: {} };
  }
  return { status: 500, body: { error: 'internal error (see the gateway log)', code: 'INTERNAL' }, headers: {} };
}
