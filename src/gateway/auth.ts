// Bearer-token check for every API call, /metrics and the WebSocket, when FENNEL_GATEWAY_TOKEN is set.
// Browsers cannot set headers on a WebSocket, so there the token may come as `?token=` (RFC 6750 §2.3's
// query form); elsewhere, `Authorization: Bearer <token>`. Compared in constant time, on fixed-length hashes
// so the comparison leaks neither the token nor its length.

import { createHash, timingSafeEqual } from 'node:crypto';

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export type TokenCheck = (authorization: string | undefined, queryToken: string | undefined) => boolean;

/** A check that accepts a request carrying `token`; with no token configured, every request. */
export function tokenCheck(token: string | undefined): TokenCheck {
  if (!token) return () => true;
  const expected = digest(token);
  return (authorization, queryToken) => {
    const given = authorization?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim() ?? queryToken;
    return given !== undefined && timingSafeEqual(digest(given), expected);
  };
}
