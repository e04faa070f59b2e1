// Broker and result backend URLs, read once per engine (clients/redis/url.ts, clients/amqp/url.ts,
// clients/sqlite-file.ts) with the helpers here, so every engine checks each part the same way at
// construction and a mistake is a ConfigError that names the part, what it was and what is accepted, instead of
// a default used in silence (a port that does not parse, a database path with a typo, a query option nobody
// reads). The WHATWG parser is not used for the authority: it only says "Invalid URL", never which part.
// maskUrl() hides the password wherever a URL is shown (errors, logs, `fennel status`).

import { ConfigError } from '../errors.ts';

export interface UrlParts {
  /** Lower case, without `://`. */
  scheme: string;
  /** Percent-decoded; '' when absent. */
  username: string;
  password: string;
  /** Without the brackets of an IPv6 address; '' when absent (the engine's default host). */
  host: string;
  /** Undefined when absent: the engine's default port. */
  port: number | undefined;
  /** Everything from the first '/' after the host up to the query, as written ('' when absent). */
  path: string;
  query: URLSearchParams;
  /** The URL with its password masked, for messages. */
  masked: string;
}

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;

/** The scheme of a URL, lower case ('' if it has none). */
export function schemeOf(url: string): string {
  return SCHEME.exec(url)?.[1]?.toLowerCase() ?? '';
}

/** The error for a value without `scheme://`. */
export function notAUrl(url: string): ConfigError {
  return new ConfigError(`${JSON.stringify(maskUrl(url))} is not a URL: write scheme://…, such as sqlite://fennel.db or redis://127.0.0.1:6379/0`);
}

/** Where the authority (user:password@host:port) ends: at the first '/', '?' or '#' after `from`. */
function authorityEnd(url: string, from: number): number {
  for (let i = from; i < url.length; i++) if (url[i] === '/' || url[i] === '?' || url[i] === '#') return i;
  return url.length;
}

/** The URL with any password replaced by `***`, for error messages and logs. Never throws. */
export function maskUrl(url: string): string {
  const scheme = SCHEME.exec(url);
  if (!scheme) return url;
  const from = scheme[0].length;
  const end = authorityEnd(url, from);
  // The last '@' of the authority ends the user info (a password may hold an unescaped '@').
  const at = url.lastIndexOf('@', end - 1);
  if (at < from) return url;
  const colon = url.indexOf(':', from);
  if (colon < 0 || colon >= at - 1) return url; // no password, or an empty one
  return `${url.slice(0, colon + 1)}***${url.slice(at)}`;
}

function decode(text: string, part: string, masked: string): string {
  try {
    return decodeURIComponent(text);
  } catch (error) {
    throw new ConfigError(`the ${part} of ${masked} has a malformed %-escape: write a '%' as %25`, { cause: error });
  }
}

/**
 * Splits `scheme://user:password@host:port/path?query` into its parts, checking the host and port. Throws
 * ConfigError naming the part that is wrong. Engines check the path and the query themselves.
 */
export function splitUrl(url: string): UrlParts {
  const masked = maskUrl(url);
  const scheme = SCHEME.exec(url);
  if (!scheme) throw notAUrl(url);
  const from = scheme[0].length;
  // An unescaped '#' cuts the rest of the URL off as a fragment: a password holding one would be cut in two.
  if (url.includes('#')) throw new ConfigError(`${masked} has a '#', which ends a URL there; write a '#' in a password as %23`);
  const end = authorityEnd(url, from);
  const authority = url.slice(from, end);
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? '' : authority.slice(0, at);
  const hostport = authority.slice(at + 1);
  const colon = userinfo.indexOf(':');
  const username = decode(colon < 0 ? userinfo : userinfo.slice(0, colon), 'user name', masked);
  const password = colon < 0 ? '' : decode(userinfo.slice(colon + 1), 'password', masked);

  let host: string;
  let portText: string | undefined;
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    if (close < 0) throw new ConfigError(`the host of ${masked} opens an IPv6 address with '[' and never closes it`);
    host = hostport.slice(1, close);
    const rest = hostport.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) throw new ConfigError(`the host of ${masked} has '${rest}' after the IPv6 address; write [address]:port`);
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const parts = hostport.split(':');
    if (parts.length > 2) throw new ConfigError(`the host of ${masked} has more than one ':'; write host:port, and an IPv6 address in brackets ([::1]:6379)`);
    host = parts[0]!;
    portText = parts[1];
  }
  if (/[\s%<>"{}|\\^`]/.test(host)) throw new ConfigError(`the host '${host}' of ${masked} is not a host name or address`);

  let port: number | undefined;
  if (portText !== undefined && portText !== '') {
    port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65_535)) throw new ConfigError(`the port '${portText}' of ${masked} is not a port: use a whole number from 1 to 65535, or leave it out for the default`);
  }

  const rest = url.slice(end);
  const q = rest.indexOf('?');
  return {
    scheme: scheme[1]!.toLowerCase(),
    username,
    password,
    host,
    port,
    path: q < 0 ? rest : rest.slice(0, q),
    query: new URLSearchParams(q < 0 ? '' : rest.slice(q + 1)),
    masked,
  };
}

/** Throws ConfigError for the first query parameter that is not in `known`. */
export function checkQuery(parts: Pick<UrlParts, 'query' | 'masked' | 'scheme'>, known: readonly string[], see = 'docs/config.md'): void {
  for (const key of parts.query.keys()) {
    if (known.includes(key)) continue;
    const accepted = known.length ? `known: ${known.join(', ')}` : `${parts.scheme}:// URLs take none`;
    throw new ConfigError(`unknown parameter '${key}' in ${parts.masked}; ${accepted} (see ${see})`);
  }
}
