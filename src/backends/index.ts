// URL scheme → result backend engine.

import { ConfigError } from '../errors.ts';
import type { ReplyRoutes } from '../clients/amqp/replies.ts';
import { checkEngineUrl } from '../clients/urls.ts';
import { maskUrl, notAUrl, schemeOf } from '../util/url.ts';
import type { ResultBackend } from './backend.ts';
import { MemoryBackend } from './memory.ts';
import { NatsBackend } from './nats.ts';
import { RedisBackend } from './redis.ts';
import { RpcBackend } from './rpc.ts';
import { SqliteBackend } from './sqlite.ts';

export interface BackendOptions {
  pollIntervalMs: number;
  resultExpiresSec: number;
  /** The app's broker URL: rpc:// sends results back through it. */
  broker?: string;
  /** How long a call waits for a store that does not answer before it fails with BrokerUnavailableError. */
  connectTimeoutMs?: number;
  /** Shared with the app's AMQP transport (clients/amqp/replies.ts). */
  replies?: ReplyRoutes;
}

export const BACKEND_SCHEMES = ['sqlite', 'redis', 'rediss', 'nats', 'rpc', 'memory'] as const;

const memory = new Map<string, MemoryBackend>();

function unknownScheme(url: string): ConfigError {
  if (!schemeOf(url)) return notAUrl(url);
  return new ConfigError(`no result backend for ${maskUrl(url)}; a result backend URL starts with one of ${BACKEND_SCHEMES.map((s) => `${s}://`).join(', ')}`);
}

function checkRpc(url: string, broker: string | undefined): void {
  // Celery's rpc backend URL is `rpc://` alone: the results travel through the broker's connection.
  if (!/^rpc:\/\/\/?$/i.test(url)) throw new ConfigError(`${maskUrl(url)}: rpc:// takes no host, path or parameters (the results go back through the broker); write rpc://`);
  if (broker !== undefined && !/^amqps?:/i.test(broker)) {
    throw new ConfigError(`the rpc:// result backend sends results back through RabbitMQ; it needs an amqp:// broker, not ${maskUrl(broker)} (use redis:// or sqlite:// results there)`);
  }
}

/**
 * Checks every part of a result backend URL with the parser its engine uses, and the rpc:// backend's need of
 * an amqp:// broker; throws the ConfigError the engine would, at an app's construction.
 */
export function checkBackendUrl(url: string, broker?: string): void {
  const scheme = schemeOf(url);
  if (scheme === 'rpc') checkRpc(url, broker);
  else if (!checkEngineUrl(url, scheme)) throw unknownScheme(url);
}

export function createBackend(url: string, options: BackendOptions): ResultBackend {
  const { connectTimeoutMs } = options;
  const timeout = { ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}), ...(options.replies ? { replies: options.replies } : {}) };
  switch (url.slice(0, url.indexOf(':')).toLowerCase()) {
    case 'sqlite':
      return new SqliteBackend(url, options);
    case 'redis':
    case 'rediss':
      return new RedisBackend(url, options);
    case 'nats':
      return new NatsBackend(url, { resultExpiresSec: options.resultExpiresSec, ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}) });
    case 'rpc':
      if (!options.broker) throw new ConfigError('the rpc:// result backend sends results through the broker; give the app an amqp:// broker URL');
      checkRpc(url, options.broker);
      return new RpcBackend(url, { broker: options.broker, resultExpiresSec: options.resultExpiresSec, ...timeout });
    case 'amqp':
    case 'amqps':
      // An amqp:// backend is what an app with an AMQP broker and no backend of its own gets (the backend
      // defaults to the broker URL): RabbitMQ stores nothing, so results go back by rpc through that broker.
      return new RpcBackend(url, { broker: url, resultExpiresSec: options.resultExpiresSec, ...timeout });
    case 'memory': {
      let b = memory.get(url);
      if (!b) memory.set(url, (b = new MemoryBackend(url)));
      return b;
    }
    default:
      throw unknownScheme(url);
  }
}
