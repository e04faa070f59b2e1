// memcached://host1:port1,host2:port2,…?failures=2&retryMs=30000 — a cache spread over memcached servers, each key
// on one server chosen by a consistent-hash ring that libmemcached (and so pylibmc, PHP's Memcached, …) also uses:
// a Python process with pylibmc and `behaviors={"ketama_weighted": True}` reads and writes the same keys on the
// same servers. (Only "ketama_weighted" agrees: plain "ketama" puts 100 points per server on the ring, one per
// hash of the server's name, with the key hash left at libmemcached's default; test/cache/memcached.test.ts checks
// both against pylibmc.)
//
// The ring is libketama's: per server, 40 MD5 digests of "<host>:<port>-<i>" (just "<host>-<i>" on the default
// port 11211, as libmemcached writes it), 4 points of 32 bits out of each, 160 points a server; a key goes to the
// first point at or after the MD5 of the key. hashring builds and searches it; see ringOf() for what it is given.
//
// Failures are handled as libmemcached's server_failure_limit and retry_timeout with auto-eject do: a server whose
// connection fails `failures` times in a row (a timeout or a reset fails every request waiting on it: one failure)
// is taken out of the ring (its keys go to the others meanwhile, as misses
// there at first) and put back after `retryMs`; one failure on its return takes it out again, a success clears
// its count. Every operation settles within the Cache's timeoutMs.
//
// One memjs client per server (memjs's own server choice, failover and retries are off: the ring and the
// counting here replace them). No SASL: a user name or password in the URL is a ConfigError.

import type { Socket } from 'node:net';
import HashRing from 'hashring';
import memjs from 'memjs';
import { CacheError, ConfigError } from '../errors.ts';
import { checkQuery, maskUrl, notAUrl, schemeOf } from '../util/url.ts';
import type { CacheEngine, CacheEngineOptions } from './engine.ts';

/** One server of a memcached:// URL. */
export interface MemcachedServer {
  /** As written, without the brackets of an IPv6 address. */
  host: string;
  port: number;
  /** `host:port` (`[v6]:port`), in messages and servers(). */
  address: string;
}

export interface MemcachedUrl {
  servers: MemcachedServer[];
  /** Failures in a row after which a server is taken out of the ring (libmemcached's server_failure_limit). */
  failures: number;
  /** How long a server stays out before it is tried again (libmemcached's retry_timeout). */
  retryMs: number;
  /** The URL with any password masked. */
  safeUrl: string;
}

export const MEMCACHED_DEFAULT_PORT = 11211;
const DEFAULT_FAILURES = 2;
const DEFAULT_RETRY_MS = 30_000;
/** timeoutMs is the Cache's own parameter (cache.ts reads it); accepted here so the URL is checked in one piece. */
const PARAMETERS = ['failures', 'retryMs', 'timeoutMs'];
const SEE = 'docs/cache.md';

/** Reads a memcached:// URL, checking every part; a mistake is a ConfigError naming the part. */
export function parseMemcachedUrl(url: string): MemcachedUrl {
  const masked = maskUrl(url);
  if (schemeOf(url) === '') throw notAUrl(url);
  if (schemeOf(url) !== 'memcached') throw new ConfigError(`${masked} is not a memcached URL: it starts with memcached://`);
  if (url.includes('#')) throw new ConfigError(`${masked} has a '#', which ends a URL there`);
  const from = url.indexOf('://') + 3;
  const end = url.slice(from).search(/[/?]/);
  const authority = end < 0 ? url.slice(from) : url.slice(from, from + end);
  const rest = end < 0 ? '' : url.slice(from + end);
  if (authority.includes('@')) {
    throw new ConfigError(`${masked} has a user name or password: memcached's SASL authentication is not supported yet; run the servers without -S, reachable only from where Fennel runs`);
  }

  const servers = authority.split(',').map((text, i) => parseServer(text, i, masked));
  const seen = new Set<string>();
  for (const server of servers) {
    if (seen.has(server.address)) throw new ConfigError(`the server ${server.address} is named twice in ${masked}: name each server once`);
    seen.add(server.address);
  }

  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  if (path !== '' && path !== '/') throw new ConfigError(`the path '${path}' of ${masked} means nothing to memcached (it has no databases): end the URL after the servers, or with '?' and parameters`);
  const query = new URLSearchParams(q < 0 ? '' : rest.slice(q + 1));
  checkQuery({ query, masked, scheme: 'memcached' }, PARAMETERS, SEE);
  return {
    servers,
    failures: wholeNumber(query, 'failures', DEFAULT_FAILURES, 1, masked),
    retryMs: wholeNumber(query, 'retryMs', DEFAULT_RETRY_MS, 1, masked),
    safeUrl: masked,
  };
}

/** One `host[:port]` (or `[v6]:port`) of the comma-separated list; `index` counts from 0. */
function parseServer(text: string, index: number, masked: string): MemcachedServer {
  const which = `server ${index + 1} ('${text}') of ${masked}`;
  if (text === '') throw new ConfigError(`server ${index + 1} of ${masked} is empty: write memcached://host:port,host:port,… (port ${MEMCACHED_DEFAULT_PORT} if left out)`);
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new ConfigError(`${which} opens an IPv6 address with '[' and never closes it`);
    host = text.slice(1, close);
    const after = text.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw new ConfigError(`${which} has '${after}' after the IPv6 address; write [address]:port`);
    portText = after === '' ? undefined : after.slice(1);
  } else {
    const parts = text.split(':');
    if (parts.length > 2) throw new ConfigError(`${which} has more than one ':'; write host:port, and an IPv6 address in brackets ([::1]:11211)`);
    host = parts[0]!;
    portText = parts[1];
  }
  if (host === '') throw new ConfigError(`${which} has no host: write host:port`);
  if (/[\s%<>"{}|\\^`@]/.test(host)) throw new ConfigError(`the host '${host}' of ${which} is not a host name or address`);
  let port = MEMCACHED_DEFAULT_PORT;
  if (portText !== undefined) {
    port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65_535)) throw new ConfigError(`the port '${portText}' of ${which} is not a port: use a whole number from 1 to 65535, or leave it out for ${MEMCACHED_DEFAULT_PORT}`);
  }
  return { host, port, address: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}` };
}

function wholeNumber(query: URLSearchParams, name: string, fallback: number, least: number, masked: string): number {
  const text = query.get(name);
  if (text === null) return fallback;
  const value = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
  if (!(value >= least)) throw new ConfigError(`${name} of ${masked} is '${text}': use a whole number from ${least} (default ${fallback})`);
  return value;
}

/** What the engine keeps about one server. */
interface ServerState extends MemcachedServer {
  /** Its name on the ring: libmemcached's, "<host>:<port>", or "<host>" on the default port (see ringOf). */
  ringName: string;
  client: memjs.Client;
  /** Failed operations in a row; a success sets it to 0. */
  failures: number;
  inRing: boolean;
  /** While it is out: the timer that puts it back. */
  retryTimer: NodeJS.Timeout | undefined;
  /** While it is out: when it comes back (ms since the epoch), for messages. */
  backAt: number;
}

/** memcached reads an expiry above 30 days as a unix time, not a number of seconds. */
const MAX_RELATIVE_EXPIRY_SEC = 30 * 24 * 3600;

/** memjs logs every error reply and connection failure to its logger (console by default); we report them ourselves. */
const SILENT = { log: (): void => {} };

/** The number of MD5 digests (4 ring points each) each of `live` equally weighted servers gets. */
export function ketamaHashesPerServer(live: number): number {
  // libmemcached's update_continuum (weighted ketama), in C floats:
  //   pct = (float)weight / (float)total_weight;
  //   points = floor((float)(pct * 160 / 4 * (float)live + 0.0000000001)) * 4;
  // Single precision rounds some counts down: 25 servers get 39 digests each, not 40. Math.fround repeats each
  // float step. (hashring's own count, Math.floor(1 / live * 40 * live) in doubles, rounds down elsewhere: 7 servers.)
  const f = Math.fround;
  const pct = f(f(1) / f(live));
  return Math.floor(f(f(f(f(pct * 160) / 4) * f(live)) + 1e-10));
}

/**
 * The ring of these servers. Each is given to hashring under its libmemcached name with its digest count spelled
 * out, so hashring hashes "<name>-<i>" for i below that count, 4 points a digest, MD5: libketama's continuum.
 * 'vnode count' 0 makes hashring take each server's count as given (its own would round 40 down to 39 for 7
 * servers). The names are built here rather than with hashring's 'default port' option, whose address parser
 * (connection-parse) cannot read an IPv6 address.
 */
function ringOf(servers: readonly ServerState[]): HashRing {
  const hashes = ketamaHashesPerServer(servers.length);
  return new HashRing(Object.fromEntries(servers.map((server) => [server.ringName, { vnodes: hashes }])), 'md5', { 'vnode count': 0, replicas: 4 });
}

function ringNameOf(host: string, port: number): string {
  return port === MEMCACHED_DEFAULT_PORT ? host : `${host}:${port}`;
}

/** A transport failure (the server did not answer, or the connection broke), as opposed to an error the server replied with. */
class ServerDown extends Error {}
/** What the requests still waiting on a connection get when it is dropped (see retire): not a failure of their own. */
class Dropped extends Error {}

export class MemcachedEngine implements CacheEngine {
  readonly kind = 'memcached';
  /** Shared by every process that names the same servers. */
  readonly local = false;
  /** memcached's default item size limit (-I 1m); a larger value is refused by the server. */
  readonly maxValueBytes = 1024 * 1024;
  readonly url: string;
  private readonly config: MemcachedUrl;
  private readonly timeoutMs: number;
  private readonly warn: (message: string) => void;
  private readonly all: ServerState[];
  /** The servers now in the ring, by ring name; none when every server is out. */
  private ring: HashRing | undefined;
  private readonly byRingName = new Map<string, ServerState>();
  private closed = false;

  constructor(url: string, options: CacheEngineOptions) {
    this.config = parseMemcachedUrl(url);
    this.url = this.config.safeUrl;
    this.timeoutMs = options.timeoutMs;
    this.warn = options.warn;
    this.all = this.config.servers.map((server) => ({
      ...server,
      ringName: ringNameOf(server.host, server.port),
      client: this.clientFor(server),
      failures: 0,
      inRing: true,
      retryTimer: undefined,
      backAt: 0,
    }));
    for (const server of this.all) this.byRingName.set(server.ringName, server);
    this.rebuildRing();
  }

  /** The server the ring picks for `key` now ('host:port'), or undefined when every server is out of it. */
  serverFor(key: string): string | undefined {
    return this.pick(key)?.address;
  }

  /** Each server, whether it is in the ring, and its failures in a row. */
  servers(): Array<{ server: string; inRing: boolean; failures: number }> {
    return this.all.map((s) => ({ server: s.address, inRing: s.inRing, failures: s.failures }));
  }

  get(key: string): Promise<string | undefined> {
    let server: ServerState;
    try {
      server = this.serverOrThrow(key);
    } catch (error) {
      return Promise.reject(error);
    }
    const client = server.client;
    // run()'s steps, with the decoding in the same callback: one promise fewer on the hot path.
    return client.get(key).then(
      (reply) => {
        server.failures = 0;
        return decode(reply.value);
      },
      (error: unknown) => {
        throw this.failure(server, client, error ?? new Error('memjs failed without an error'));
      },
    );
  }

  /** memjs 1.3 has no multi-get: each server's keys go as gets pipelined on its one connection, all servers at once. */
  async getMany(keys: readonly string[]): Promise<Array<string | undefined | CacheError>> {
    const groups = new Map<ServerState, number[]>();
    keys.forEach((key, i) => {
      const server = this.serverOrThrow(key);
      const group = groups.get(server);
      if (group) group.push(i);
      else groups.set(server, [i]);
    });
    const values = new Array<string | undefined | CacheError>(keys.length);
    // A server that fails fails its own keys only: the others' values are answered (the contract's partial answer).
    await Promise.all(
      [...groups].map(async ([server, indexes]) => {
        try {
          const found = await this.run(server, (client) => Promise.all(indexes.map((i) => client.get(keys[i]!))));
          indexes.forEach((keyIndex, j) => (values[keyIndex] = decode(found[j]!.value)));
        } catch (error) {
          for (const keyIndex of indexes) values[keyIndex] = error as CacheError;
        }
      }),
    );
    return values;
  }

  /** Resolves with memjs's answer (true), which the Cache does not read: no async layer of its own (see run). */
  set(key: string, value: string, ttlSec: number): Promise<void> {
    let server: ServerState;
    try {
      server = this.serverOrThrow(key);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.run(server, (client) => client.set(key, value, { expires: expiry(ttlSec) })) as Promise<unknown> as Promise<void>;
  }

  /** memjs resolves false when the key holds a value already (memcached's NOT_STORED / "key exists"). */
  async add(key: string, value: string, ttlSec: number): Promise<boolean> {
    return this.run(this.serverOrThrow(key), (client) => client.add(key, value, { expires: expiry(ttlSec) }));
  }

  /** memjs resolves false for a key that was not there: nothing to do either way. */
  async delete(key: string): Promise<void> {
    await this.run(this.serverOrThrow(key), (client) => client.delete(key));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const server of this.all) {
      clearTimeout(server.retryTimer);
      server.retryTimer = undefined;
      retire(server.client, 'the cache was closed', true);
    }
  }

  /** The server for `key`; CacheError at once when the engine is closed or every server is out of the ring. */
  private serverOrThrow(key: string): ServerState {
    if (this.closed) throw new CacheError(`the memcached cache ${this.url} is closed`);
    const server = this.pick(key);
    if (server) return server;
    const next = Math.min(...this.all.map((s) => s.backAt));
    throw new CacheError(
      `no memcached server is in the ring: all ${this.all.length} were taken out after failing ${this.config.failures} times in a row; the first is tried again in ${formatMs(Math.max(0, next - Date.now()))}`,
    );
  }

  private pick(key: string): ServerState | undefined {
    const name = this.ring?.get(key);
    return name === undefined ? undefined : this.byRingName.get(name);
  }

  /**
   * Runs one request (or one server's batch) on `server`'s client and counts the outcome: a success clears the
   * server's failures; a failure to answer adds one (and may take it out of the ring). An error the server replied
   * with (a value too large, say) is the server working: it counts as a success. The time limit is memjs's own
   * (clientFor): one deadline list and one socket timer per connection, where a timer per request cost a tenth of
   * the throughput; when it passes, every request waiting on that connection fails, as they would one by one.
   */
  private run<T>(server: ServerState, request: (client: memjs.Client) => Promise<T>): Promise<T> {
    const client = server.client;
    return request(client).then(
      (value) => {
        server.failures = 0;
        return value;
      },
      (error: unknown) => {
        throw this.failure(server, client, error ?? new Error('memjs failed without an error'));
      },
    );
  }

  /** The CacheError of a failed request, after counting it against its server (see run). */
  private failure(server: ServerState, client: memjs.Client, error: unknown): CacheError {
    const timedOut = error instanceof Error && !isReply(error) && /timed out/i.test(error.message);
    const reason = timedOut ? `timed out after ${this.timeoutMs} ms` : messageOf(error);
    // A request dropped with its connection is not counted: the failure that dropped it was.
    if (!(error instanceof Dropped)) {
      if (isReply(error)) this.succeeded(server);
      else this.failed(server, client, timedOut ? new ServerDown(reason) : error);
    }
    return new CacheError(`memcached ${server.address}: ${reason}`, { cause: error });
  }

  private succeeded(server: ServerState): void {
    server.failures = 0;
  }

  /**
   * A failure to answer: the server's connection is dropped (a fresh client next time, see retire) and counted once;
   * at `failures` in a row, the server is taken out of the ring until retryMs have passed.
   */
  private failed(server: ServerState, client: memjs.Client, error: unknown): void {
    // A connection that fails (a timeout, a reset) fails every request waiting on it at once: that is one failure
    // of the server, counted by the first of them, as libmemcached counts one per failed connection. Counting each
    // request took every server out of the ring for retryMs after one stall of this process with 50 in flight.
    if (server.client !== client || this.closed) return;
    retire(client, `connection closed after another request on it failed (${errorCode(error)})`);
    server.client = this.clientFor(server);
    server.failures++;
    if (!server.inRing || this.closed || server.failures < this.config.failures) return;
    // A server back from its time out, failing again at once, goes out again on its first failure (its count was
    // left at the limit, as libmemcached leaves server_failure_counter until a success).
    const again = server.failures > this.config.failures;
    server.inRing = false;
    server.backAt = Date.now() + this.config.retryMs;
    this.rebuildRing();
    server.retryTimer = setTimeout(() => this.putBack(server), this.config.retryMs);
    server.retryTimer.unref();
    const why = errorCode(error);
    this.warn(
      again
        ? `memcached ${server.address} taken out of the ring again: it failed on its first try after coming back (${why}); trying it again in ${formatMs(this.config.retryMs)}`
        : `memcached ${server.address} taken out of the ring after ${server.failures} failures in a row (${why}); trying it again in ${formatMs(this.config.retryMs)}`,
    );
  }

  private putBack(server: ServerState): void {
    server.retryTimer = undefined;
    if (this.closed) return;
    server.inRing = true;
    this.rebuildRing();
    this.warn(`memcached ${server.address} is back in the ring after ${formatMs(this.config.retryMs)} out; its keys go to it again (one more failure takes it out again)`);
  }

  private rebuildRing(): void {
    const live = this.all.filter((s) => s.inRing);
    this.ring = live.length ? ringOf(live) : undefined;
  }

  /** A memjs client for one server: no retries, no failover (the ring does that), timeoutMs for a request and for connecting. */
  private clientFor(server: MemcachedServer): memjs.Client {
    const seconds = this.timeoutMs / 1000;
    const options = { retries: 0, failover: false, timeout: seconds, conntimeout: seconds, keepAlive: true, logger: SILENT };
    const memjsServer = new memjs.Server(server.host, server.port, undefined, undefined, options);
    // memjs falls back to MEMCACHIER_USERNAME / MEMCACHE_USERNAME (and _PASSWORD) from the environment for SASL;
    // Fennel does not authenticate, so a variable set for something else must not change what it sends.
    Object.assign(memjsServer, { username: undefined, password: undefined });
    failWaitingOnClose(memjsServer);
    return new memjs.Client([memjsServer], options);
  }
}

/**
 * Makes a connection that closes without an error fail the requests still waiting on it. memjs 1.3 fails them on a
 * socket error or its own timeout only: when the server closes the connection cleanly (a memcached SIGKILLed after
 * it read a request sends FIN, not RST), its 'close' handler forgets the socket and with it the timer that would
 * have timed them out, and each waits for ever. The hook wraps the server's sock(), which opens each connection,
 * and adds a 'close' listener to every new socket; memjs's own runs first (it was added first) and has cleared the
 * socket by then, so error() here only fails the callbacks. They are not kept per socket: any request of this
 * client still waiting is failed, which is what a failure does to a client here anyway (see retire).
 */
function failWaitingOnClose(server: memjs.Server): void {
  const internal = server as unknown as { _socket?: Socket };
  const open = server.sock.bind(server);
  server.sock = (sasl, go) => {
    const before = internal._socket;
    open(sasl, go);
    const socket = internal._socket;
    if (!socket || socket === before) return;
    socket.once('close', () => {
      if (Object.keys(server.errorCallbacks).length) server.error(new ServerDown('the server closed the connection before it answered'));
    });
  };
}

/**
 * Drops a client's connection, rejecting the requests still waiting on it with `why`. After a failure the client
 * is not used again: memjs 1.3's Server clears its socket reference in the old socket's 'close' event
 * (server.js), which arrives after a timed-out socket was ended and may come after the next request opened a new
 * socket, which it then orphans, open and never closed. A fresh client per failure keeps the two apart. With
 * `quit` (close()), a connected client is sent QUIT instead; one that never connected is not dialled to say goodbye.
 */
function retire(client: memjs.Client, why: string, quit = false): void {
  if (quit && client.servers.every((s) => s.connected)) {
    client.quit();
    return;
  }
  for (const server of client.servers) server.error(new Dropped(why));
}

/** True for memjs's errors that carry a reply of the server ("MemJS SET: Too large."), false for a failed connection. */
function isReply(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('MemJS ');
}

function decode(value: Buffer | null): string | undefined {
  return value === null ? undefined : value.toString('utf8');
}

/** memcached's expiry field for `ttlSec`: 0 for none; whole seconds, rounded up (0 would mean never); a unix time beyond 30 days. */
function expiry(ttlSec: number): number {
  if (!(ttlSec > 0)) return 0;
  const seconds = Math.ceil(ttlSec);
  return seconds > MAX_RELATIVE_EXPIRY_SEC ? Math.floor(Date.now() / 1000) + seconds : seconds;
}

/** The short cause of a failure for a warning: a socket error's code (ECONNREFUSED), else its message. */
function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : messageOf(error);
}

/** An error's message; memjs also fails with bare strings ("Memcached server authentication failed!"). */
function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === 'string' ? error : JSON.stringify(error);
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${Math.round(ms)} ms`;
}
