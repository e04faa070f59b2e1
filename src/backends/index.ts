// URL scheme → result backend engine.

import { ConfigError } from '../errors.ts';
import type { ResultBackend } from './backend.ts';
import { MemoryBackend } from './memory.ts';
import { RedisBackend } from './redis.ts';
import { RpcBackend } from './rpc.ts';
import { SqliteBackend } from './sqlite.ts';

export interface BackendOptions {
  pollIntervalMs: number;
  resultExpiresSec: number;
  /** The app's broker URL: rpc:// sends results back through it. */
  broker?: string;
}

export const BACKEND_SCHEMES = ['sqlite', 'redis', 'rediss', 'rpc', 'memory'] as const;

const memory = new Map<string, MemoryBackend>();

export function createBackend(url: string, options: BackendOptions): ResultBackend {
  switch (url.slice(0, url.indexOf(':')).toLowerCase()) {
    case 'sqlite':
      return new SqliteBackend(url, options);
    case 'redis':
    case 'rediss':
      return new RedisBackend(url, options);
    case 'rpc':
      if (!options.broker) throw new ConfigError('the rpc:// result backend sends results through the broker; give the app an amqp:// broker URL');
      return new RpcBackend(url, { broker: options.broker, resultExpiresSec: options.resultExpiresSec });
    case 'amqp':
    case 'amqps':
      // An amqp:// backend is what an app with an AMQP broker and no backend of its own gets (the backend
      // defaults to the broker URL): RabbitMQ stores nothing, so results go back by rpc through that broker.
      return new RpcBackend(url, { broker: url, resultExpiresSec: options.resultExpiresSec });
    case 'memory': {
      let b = memory.get(url);
      if (!b) memory.set(url, (b = new MemoryBackend(url)));
      return b;
    }
    default:
      throw new ConfigError(`no result backend for ${url}; known schemes: ${BACKEND_SCHEMES.map((s) => `${s}://`).join(', ')}`);
  }
}
