// What a worker says about its connections: a warning when its broker or result backend stops answering (it
// keeps reconnecting with backoff meanwhile), a line when it is back, an error when the server refused the URL
// itself (a Redis database it does not have). The engines report the changes (util/connection-state.ts); a
// server that stays away is one warning, not one per reconnect attempt.

import type { Logger } from 'pino';
import { watchConnections } from '../util/connection-state.ts';

/** Logs every connection change of this process's engines until the returned function is called. */
export function logConnections(log: Logger): () => void {
  return watchConnections(({ role, url, state, reason }) => {
    const fields = { role, url, connection: state, ...(reason !== undefined ? { reason } : {}) };
    if (state === 'up') log.info(fields, `${role} ${url} reachable again`);
    else if (state === 'down') log.warn(fields, `${role} ${url} unreachable (${reason ?? 'no answer'}); reconnecting with backoff`);
    else log.error(fields, `${role} ${url} refused: ${reason ?? 'the URL is wrong'}; fix the URL and restart the worker`);
  });
}
