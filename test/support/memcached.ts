// Private memcached servers for the cache tests: Debian's memcached, started in the foreground on a loopback port of
// the test's own (never the shared 11211), tracked so that none outlives its test file (support/process.ts), and
// killed, restarted on the same port, or stopped by the test.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { track } from './process.ts';
import { freePort, tcpAccepts } from './services.ts';

/** Debian's binary; else whatever `memcached` is on PATH. */
const MEMCACHED = existsSync('/usr/bin/memcached') ? '/usr/bin/memcached' : 'memcached';

/**
 * Why the memcached tests cannot run here (no memcached binary), or false. On CI (CI=true) a missing memcached
 * throws instead, as redisSkipReason does: there it is part of the contract (.ci/run installs it).
 */
export function memcachedSkipReason(): string | false {
  if (spawnSync(MEMCACHED, ['-V'], { stdio: 'ignore' }).status === 0) return false;
  const reason = 'memcached is not installed (apt-get install memcached)';
  if (process.env['CI'] === 'true') throw new Error(`${reason} (CI=true: memcached is required)`);
  return reason;
}

export interface RunningMemcached {
  port: number;
  /** '127.0.0.1:PORT', as a memcached:// URL and the engine's servers() name it. */
  address: string;
  /** Sends `signal` (SIGKILL by default) and resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port (after kill()), empty, and resolves once it accepts connections. */
  restart(): Promise<void>;
  /** Kills it if it is running; safe to call twice. */
  stop(): Promise<void>;
}

/** How long a starting memcached may take to accept connections before the test fails. */
const START_TIMEOUT_MS = 10_000;

/**
 * Starts `memcached -l 127.0.0.1 -p PORT` with `memoryMb` of item memory (default 64; memcached's least is 1 or 2,
 * by version) and one worker thread, and resolves once it accepts TCP connections. UDP is off (-U 0): no second
 * port to collide with. memcached refuses to run as root unless told which user to be (-u).
 */
export async function startMemcached(opts: { memoryMb?: number; port?: number } = {}): Promise<RunningMemcached> {
  const port = opts.port ?? (await freePort());
  const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', String(opts.memoryMb ?? 64), '-t', '1'];
  if (process.getuid?.() === 0) args.push('-u', 'root');
  let child: ChildProcess | undefined;

  const exited = (proc: ChildProcess): Promise<void> =>
    proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : new Promise((resolve) => proc.once('exit', () => resolve()));

  const launch = async (): Promise<void> => {
    const proc = track(spawn(MEMCACHED, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
    child = proc;
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await tcpAccepts(port))) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`memcached on port ${port} exited at start (${proc.exitCode ?? proc.signalCode}): ${stderr.trim()}`);
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`memcached on port ${port} did not accept connections within ${START_TIMEOUT_MS} ms: ${stderr.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (!child) return;
    const proc = child;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited(proc);
  };

  await launch();
  return {
    port,
    address: `127.0.0.1:${port}`,
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: () => kill('SIGKILL'),
  };
}
