// Reads a nats:// URL once, for every NATS connection Fennel opens (transport, result backend, event bus, channels,
// mailbox):
//   nats://[user:password@]host[:port][,host2[:port2],…][?replicas=3&prefix=fennel]
// Several servers are one cluster: the client connects to any and fails over to the others. `replicas` is the
// number of copies JetStream keeps of each stream and key-value bucket Fennel creates (1, the default, to 5: a
// cluster of three keeps R3 through the loss of one node). `prefix` (default `fennel`) starts the name of every
// stream, bucket and subject Fennel uses: apps with different prefixes share a server without meeting, as apps on
// different Redis databases do. Each part is checked here, so a typo is a ConfigError
// at construction, never a default taken in silence.

import { ConfigError } from '../../errors.ts';
import { checkQuery, maskUrl, notAUrl, schemeOf } from '../../util/url.ts';

export const NATS_DEFAULT_PORT = 4222;

export interface NatsUrl {
  /** 'host:port' of every server, as the client takes them. */
  servers: string[];
  user: string | undefined;
  pass: string | undefined;
  /** Copies JetStream keeps of each stream and bucket Fennel creates. */
  replicas: number;
  /** The start of every stream, bucket and subject name (letters, digits, '_' and '-'). */
  prefix: string;
  /** The URL with its password masked, for messages and logs. */
  safeUrl: string;
}

const PARAMETERS = ['replicas', 'prefix'];
const DEFAULT_PREFIX = 'fennel';

export function parseNatsUrl(url: string): NatsUrl {
  const masked = maskUrl(url);
  const scheme = schemeOf(url);
  if (scheme === '') throw notAUrl(url);
  if (scheme !== 'nats') throw new ConfigError(`${masked} is not a NATS URL: it starts with nats://`);
  if (url.includes('#')) throw new ConfigError(`${masked} has a '#', which ends a URL there; write a '#' in a password as %23`);
  const from = url.indexOf('://') + 3;
  const cut = url.slice(from).search(/[/?]/);
  const authority = cut < 0 ? url.slice(from) : url.slice(from, from + cut);
  const rest = cut < 0 ? '' : url.slice(from + cut);
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? '' : authority.slice(0, at);
  const colon = userinfo.indexOf(':');
  const decode = (text: string, part: string): string | undefined => {
    if (text === '') return undefined;
    try {
      return decodeURIComponent(text);
    } catch (error) {
      throw new ConfigError(`the ${part} of ${masked} has a malformed %-escape: write a '%' as %25`, { cause: error });
    }
  };
  const user = decode(colon < 0 ? userinfo : userinfo.slice(0, colon), 'user name');
  const pass = colon < 0 ? undefined : decode(userinfo.slice(colon + 1), 'password');
  const servers = authority
    .slice(at + 1)
    .split(',')
    .map((text, i) => server(text, i, masked));

  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  if (path !== '' && path !== '/') throw new ConfigError(`the path '${path}' of ${masked} means nothing to NATS: end the URL after the servers, or with '?' and parameters`);
  const query = new URLSearchParams(q < 0 ? '' : rest.slice(q + 1));
  checkQuery({ query, masked, scheme: 'nats' }, PARAMETERS, 'docs/transports.md#nats');
  const replicasText = query.get('replicas');
  const replicas = replicasText === null ? 1 : /^[1-5]$/.test(replicasText) ? Number(replicasText) : NaN;
  if (Number.isNaN(replicas)) throw new ConfigError(`replicas of ${masked} is '${replicasText}': use a whole number from 1 to 5 (JetStream's limit)`);
  const prefix = query.get('prefix') ?? DEFAULT_PREFIX;
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(prefix)) throw new ConfigError(`prefix of ${masked} is '${prefix}': use 1 to 32 letters, digits, '_' or '-' (it starts stream and subject names)`);
  return { servers, user, pass, replicas, prefix, safeUrl: masked };
}

/** One `host[:port]` of the comma-separated list. */
function server(text: string, index: number, masked: string): string {
  const which = `server ${index + 1} ('${text}') of ${masked}`;
  if (text === '') throw new ConfigError(`server ${index + 1} of ${masked} is empty: write nats://host:port,host:port (port ${NATS_DEFAULT_PORT} if left out)`);
  const bracket = text.startsWith('[');
  const close = bracket ? text.indexOf(']') : -1;
  if (bracket && close < 0) throw new ConfigError(`${which} opens an IPv6 address with '[' and never closes it`);
  const host = bracket ? text.slice(1, close) : text.split(':')[0]!;
  const after = bracket ? text.slice(close + 1) : text.slice(host.length);
  if (!bracket && text.split(':').length > 2) throw new ConfigError(`${which} has more than one ':'; write host:port, and an IPv6 address in brackets`);
  if (after !== '' && !after.startsWith(':')) throw new ConfigError(`${which} has '${after}' after the host; write host:port`);
  if (host === '' || /[\s%<>"{}|\\^`@]/.test(host)) throw new ConfigError(`the host of ${which} is not a host name or address`);
  const portText = after === '' ? undefined : after.slice(1);
  const port = portText === undefined ? NATS_DEFAULT_PORT : /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65_535)) throw new ConfigError(`the port '${portText}' of ${which} is not a port: use a whole number from 1 to 65535, or leave it out for ${NATS_DEFAULT_PORT}`);
  return bracket ? `[${host}]:${port}` : `${host}:${port}`;
}
