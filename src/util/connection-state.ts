// Whether this process can reach its broker and result backend, as the engines' connection layers see it
// (clients/redis/client.ts, clients/amqp/connection.ts). They report each change of state here; a worker
// listens and logs it (worker/connection-log.ts): a warning when a server stops answering, a line when it is
// back. Producers need no listener: their calls fail with BrokerUnavailableError once connectTimeoutMs passes.
// Process-wide, as a process's engines are: no interface of Transport or ResultBackend has to change for it.

export type ConnectionRole = 'broker' | 'result backend';

export interface ConnectionChange {
  role: ConnectionRole;
  /** The URL, password masked. */
  url: string;
  /** up: connected (again); down: lost or unreachable, retrying; config: the server refused the URL (a database it lacks), not retrying. */
  state: 'up' | 'down' | 'config';
  /** Why it is down (the last connection error), or what is wrong with the URL. */
  reason?: string | undefined;
}

const listeners = new Set<(change: ConnectionChange) => void>();

/** Calls `listener` on every change any engine of this process reports. Returns the function that stops it. */
export function watchConnections(listener: (change: ConnectionChange) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function reportConnection(change: ConnectionChange): void {
  for (const listener of [...listeners]) {
    try {
      listener(change);
    } catch {
      // a logger that throws must not break the connection layer that reported
    }
  }
}

/**
 * The state of one connection as its engine reports it: only changes are passed on, so a server that stays
 * away for an hour is one `down`, however many reconnect attempts fail meanwhile.
 */
export class ConnectionReporter {
  private state: ConnectionChange['state'] | undefined;

  constructor(
    readonly role: ConnectionRole,
    readonly url: string,
  ) {}

  up(): void {
    this.set('up');
  }

  down(reason: string): void {
    this.set('down', reason);
  }

  config(reason: string): void {
    this.set('config', reason);
  }

  private set(state: ConnectionChange['state'], reason?: string): void {
    // A `config` failure is final; connecting the first time is no news (nothing was down).
    if (this.state === 'config' || state === this.state) return;
    const first = this.state === undefined;
    this.state = state;
    if (first && state === 'up') return;
    reportConnection({ role: this.role, url: this.url, state, reason });
  }
}

/** connectTimeoutMs when an engine is made without one (the app's default, src/app/config.ts). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
