// Reads an amqp:// or amqps:// broker URL: the connection part goes to amqplib as it is; Fennel's own
// query parameters (queue type, maximum priority) are taken out first, and an unknown one is an error with
// a suggestion, so a typo never silently declares queues of the wrong kind.
//   amqp://user:pass@host:5672/vhost?queueType=quorum
//   amqp://guest:guest@127.0.0.1:5672/?maxPriority=10&heartbeat=30

import { ConfigError } from '../../errors.ts';

export type QueueType = 'classic' | 'quorum';

export interface AmqpUrl {
  /** The URL without Fennel's parameters: what amqplib connects to. */
  connectUrl: string;
  /** The URL with any password replaced by `***`, for error messages and logs. */
  safeUrl: string;
  queueType: QueueType;
  /** x-max-priority of the task queues; 0 means no priorities (Celery's default queue has none). */
  maxPriority: number;
}

// amqplib reads these itself (lib/connect.js); they are passed through untouched.
const AMQPLIB_PARAMS = ['frameMax', 'channelMax', 'heartbeat', 'locale', 'maxFrameSize'];
const FENNEL_PARAMS = ['queueType', 'maxPriority'];

export function parseAmqpUrl(url: string): AmqpUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new ConfigError(`broker URL ${JSON.stringify(url)} is not a URL`, { cause: error });
  }
  let queueType: QueueType = 'classic';
  let maxPriority = 0;
  for (const [key, value] of [...parsed.searchParams]) {
    if (key === 'queueType') {
      if (value !== 'classic' && value !== 'quorum') throw new ConfigError(`queueType=${value} in the broker URL: use classic or quorum`);
      queueType = value;
    } else if (key === 'maxPriority') {
      const n = Number(value);
      // RabbitMQ allows 1–255; Celery documents 10 and its priorities run 0–9.
      if (!Number.isInteger(n) || n < 1 || n > 255) throw new ConfigError(`maxPriority=${value} in the broker URL: use a whole number from 1 to 255 (Celery uses 10)`);
      maxPriority = n;
    } else if (!AMQPLIB_PARAMS.includes(key)) {
      // The list is short enough to name in full (transports/ sits below app/, where suggest() lives).
      throw new ConfigError(`unknown broker URL parameter '${key}'; known: ${[...FENNEL_PARAMS, ...AMQPLIB_PARAMS].join(', ')} (see docs/transports.md)`);
    }
  }
  // RabbitMQ 3.x quorum queues have no priorities (they arrived in 4.0, with two levels only).
  if (queueType === 'quorum' && maxPriority > 0) throw new ConfigError('maxPriority cannot be combined with queueType=quorum: quorum queues have no x-max-priority');
  for (const key of FENNEL_PARAMS) parsed.searchParams.delete(key);
  const connectUrl = parsed.toString();
  const safe = new URL(connectUrl);
  if (safe.password) safe.password = '***';
  return { connectUrl, safeUrl: safe.toString(), queueType, maxPriority };
}
