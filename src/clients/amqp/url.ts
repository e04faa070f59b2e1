// Reads an amqp:// or amqps:// broker URL: the connection part goes to amqplib as it is; Fennel's own
// query parameters (queue type, maximum priority) are taken out first, and an unknown one is an error with
// a suggestion, so a typo never silently declares queues of the wrong kind. The port and the virtual host
// are checked too (util/url.ts): amqplib would read a bad port as the default and a vhost with an unescaped
// '/' as a vhost nobody declared.
//   amqp://user:pass@host:5672/vhost?queueType=quorum
//   amqp://guest:guest@127.0.0.1:5672/?maxPriority=10&heartbeat=30

import { ConfigError } from '../../errors.ts';
import { checkQuery, maskUrl, splitUrl } from '../../util/url.ts';

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
  const parts = splitUrl(url);
  if (parts.scheme !== 'amqp' && parts.scheme !== 'amqps') throw new ConfigError(`${parts.masked} is not an AMQP URL: it starts with amqp:// or amqps://`);
  // The vhost is the whole path, one segment: RabbitMQ's default vhost '/' is written %2F (or left out).
  const vhost = parts.path.replace(/^\//, '');
  if (vhost.includes('/')) {
    throw new ConfigError(`the virtual host '${vhost}' of ${parts.masked} has a '/': the vhost is one path segment, so write a '/' inside it as %2F (amqp://host/%2F is the vhost '/'; amqp://host/ is the default)`);
  }
  try {
    decodeURIComponent(vhost);
  } catch (error) {
    throw new ConfigError(`the virtual host '${vhost}' of ${parts.masked} has a malformed %-escape: write a '%' as %25`, { cause: error });
  }
  let queueType: QueueType = 'classic';
  let maxPriority = 0;
  for (const [key, value] of parts.query) {
    if (key === 'queueType') {
      if (value !== 'classic' && value !== 'quorum') throw new ConfigError(`queueType=${value} in the broker URL: use classic or quorum`);
      queueType = value;
    } else if (key === 'maxPriority') {
      const n = Number(value);
      // RabbitMQ allows 1–255; Celery documents 10 and its priorities run 0–9.
      if (!Number.isInteger(n) || n < 1 || n > 255) throw new ConfigError(`maxPriority=${value} in the broker URL: use a whole number from 1 to 255 (Celery uses 10)`);
      maxPriority = n;
    }
  }
  checkQuery(parts, [...FENNEL_PARAMS, ...AMQPLIB_PARAMS], 'docs/transports.md');
  // RabbitMQ 3.x quorum queues have no priorities (they arrived in 4.0, with two levels only).
  if (queueType === 'quorum' && maxPriority > 0) throw new ConfigError('maxPriority cannot be combined with queueType=quorum: quorum queues have no x-max-priority');
  const parsed = new URL(url);
  for (const key of FENNEL_PARAMS) parsed.searchParams.delete(key);
  const connectUrl = parsed.toString();
  return { connectUrl, safeUrl: maskUrl(connectUrl), queueType, maxPriority };
}
