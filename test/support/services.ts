// Test support for tests that need a real service (Redis, RabbitMQ). A missing service skips the test or suite with
// one line saying why, except on CI (CI=true), where it fails: there the service is part of the contract.
//
// Each test file that uses Redis owns one database number, so files never see each other's keys, and
// flushes it before and after its tests:
//   conformance 11 · faults 12 · unit (scripts) 13 · AMQP interop results 10 · gateway 9 · event buses 8 ·
//   task semantics (revoke, retries, faults) 7 · messaging 6 · AMQP faults results 5 · direct/broadcast 4 ·
//   broadcast interop 3 · channels 2 · beat (its two files, one at a time) 0
// (the Celery interop tests use 14).
// RabbitMQ tests use queue names unique to the run and delete them when they end.

import { createServer, Socket } from 'node:net';
import { Redis } from 'ioredis';

export const REDIS_HOST = '127.0.0.1';
export const REDIS_PORT = 6379;

/** Redis databases of the test files (one each, flushed by its owner). Also taken: 14 (the Celery interop fixtures' default), 15 (bench/), 1 (bench/channels.bench.ts). */
export const REDIS_DB = { conformance: 11, faults: 12, unit: 13, amqpInterop: 10, gateway: 9, eventBuses: 8, semantics: 7, amqpFaults: 5, messaging: 6, directBroadcast: 4, interopBroadcast: 3, channels: 2, beat: 0 } as const;

/** `redis://127.0.0.1:<port>/<db>`: the URL of one test file's database. */
export function redisUrlForTest(db: number, port = REDIS_PORT): string {
  return `redis://${REDIS_HOST}:${port}/${db}`;
}

/**
 * True if a Redis server answers PING on host:port within `timeoutMs`. Speaks RESP over a plain socket,
 * so an absent server costs one refused connection, not a client's reconnect loop.
 */
export function redisAnswers(port = REDIS_PORT, timeoutMs = 1_000, host = REDIS_HOST): Promise<boolean> {
  // +PONG, or -NOAUTH/-LOADING…: an error reply is a server that is there but not usable.
  return probe(host, port, timeoutMs, '*1\r\n$4\r\nPING\r\n', (reply) => (reply.includes('\r\n') ? reply.startsWith('+PONG') : undefined));
}

/** True if something on host:port accepts a TCP connection within `timeoutMs` (hung up at once). */
export function tcpAccepts(port: number, host = '127.0.0.1', timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, host, () => done(true));
  });
}

/**
 * Connects, writes `greeting`, and resolves with `judge`'s verdict on what has arrived so far (undefined: read
 * more); false on a refused connection, an error or `timeoutMs` of silence. No client library, no retries.
 */
function probe(host: string, port: number, timeoutMs: number, greeting: string | Buffer, judge: (reply: string) => boolean | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let reply = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('error', () => done(false));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1');
      const verdict = judge(reply);
      if (verdict !== undefined) done(verdict);
    });
    socket.connect(port, host, () => socket.write(greeting));
  });
}

/** The skip reason for a service that does not answer, or false; on CI (CI=true) it throws instead. */
async function skipReason(service: string, host: string, port: number, answers: boolean): Promise<string | false> {
  if (answers) return false;
  const reason = `${service} not reachable at ${host}:${port}`;
  if (process.env['CI'] === 'true') throw new Error(`${reason} (CI=true: ${service} is required)`);
  return reason;
}

/**
 * Why Redis tests cannot run here, or false if they can. On CI (CI=true) an unreachable Redis throws
 * instead, so a broken service fails the run rather than skipping silently.
 * Use at a file's top level: `describe('…', { skip: await redisSkipReason() }, () => { … })`.
 */
export async function redisSkipReason(port = REDIS_PORT): Promise<string | false> {
  return skipReason('Redis', REDIS_HOST, port, await redisAnswers(port));
}

/**
 * Inside a test: true if Redis answers; otherwise marks the test skipped with the reason and returns false
 * (the test should return), or throws on CI. `if (!(await requireRedis(t))) return;`
 */
export async function requireRedis(t?: { skip(message?: string): void }, port = REDIS_PORT): Promise<boolean> {
  const reason = await redisSkipReason(port);
  if (reason === false) return true;
  if (t) t.skip(reason);
  return false;
}

/** A plain ioredis client on one database, failing fast (no retry loop): for test setup and inspection. */
export function testRedisClient(db: number, port = REDIS_PORT): Redis {
  const client = new Redis({ host: REDIS_HOST, port, db, lazyConnect: false, maxRetriesPerRequest: 1, retryStrategy: () => null, connectionName: 'fennel-test' });
  client.on('error', () => {});
  return client;
}

/** FLUSHDB on one database (only that one; the server's other databases are left alone). */
export async function flushRedisDb(db: number, port = REDIS_PORT): Promise<void> {
  const client = testRedisClient(db, port);
  try {
    await client.flushdb();
  } finally {
    client.disconnect();
  }
}

export const RABBIT_HOST = '127.0.0.1';
export const RABBIT_PORT = 5672;
/** The local RabbitMQ as the tests use it (guest/guest, vhost /). */
export const RABBIT_URL = `amqp://guest:guest@${RABBIT_HOST}:${RABBIT_PORT}/`;

/**
 * True if an AMQP 0-9-1 broker answers on host:port within `timeoutMs`: sends the protocol header and
 * waits for the first frame (connection.start, frame type 1), then hangs up without logging in.
 */
export function rabbitAnswers(port = RABBIT_PORT, timeoutMs = 2_000, host = RABBIT_HOST): Promise<boolean> {
  return probe(host, port, timeoutMs, Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]), (reply) => reply.charCodeAt(0) === 1);
}

/** Why RabbitMQ tests cannot run here, or false if they can; throws on CI (CI=true), as redisSkipReason does. */
export async function rabbitSkipReason(port = RABBIT_PORT): Promise<string | false> {
  return skipReason('RabbitMQ', RABBIT_HOST, port, await rabbitAnswers(port));
}

/** Which engines a test file that runs on sqlite://, redis:// and amqp:// runs, and why the others are skipped. */
export interface EngineSelection {
  /** Why engine `name` is left out: not among those the environment variable lists; false if listed, or if it is unset. */
  unselected: (name: string) => string | false;
  /** Why the redis:// engine is skipped (left out, or Redis not reachable), or false. */
  redis: string | false;
  /** Why the amqp:// engine, with its results in Redis, is skipped (left out, RabbitMQ or Redis not reachable), or false. */
  amqp: string | false;
}

/** What each engine of such a file has: the URLs of its broker and result backend, why it is skipped, a clean start. */
export interface TestEngine {
  name: string;
  broker: string;
  backend: string;
  skip: string | false;
  /** Before the suite: a clean store. */
  prepare(): Promise<void>;
}

/**
 * The engines a test file runs: all of them, or only those `envName` lists (comma-separated, e.g.
 * `REFS_TEST_ENGINES=sqlite`, for a local run beside another that uses Redis), and the skip reasons of redis:// and
 * amqp:// (which keeps its results in Redis, so it needs both services). Without `envName`, every engine is selected.
 * Throws on CI (CI=true) for a selected engine whose service does not answer, as redisSkipReason does.
 */
export async function engineSelection(envName?: string): Promise<EngineSelection> {
  const only = envName === undefined ? undefined : process.env[envName]?.split(',').map((name) => name.trim());
  const unselected = (name: string): string | false => (only && !only.includes(name) ? `not in ${envName} (${only.join(',')})` : false);
  const redis = unselected('redis') || (await redisSkipReason());
  const amqp = unselected('amqp') || (await rabbitSkipReason()) || (await redisSkipReason());
  return { unselected, redis, amqp };
}

/** A TCP port nothing listens on now (the kernel's pick, released at once): for a private server a test starts. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
