// NATS for the tests: the shared server with JetStream on 127.0.0.1:4222 (started before the session on this kind of
// machine, and by .ci/run if it is not running), and private servers a test starts on ports of its own (a store in a
// temp directory, optionally routed into a cluster), which it may SIGKILL and restart. Each test file gives its
// apps a `prefix` of its own (nats://…?prefix=…), so streams and buckets of two files never meet on the shared server.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { track } from './process.ts';
import { freePort, tcpAccepts } from './services.ts';

export const NATS_HOST = '127.0.0.1';
export const NATS_PORT = 4222;

/** A nats:// URL on the shared server with its own prefix (letters, digits, '_' and '-'). */
export function natsUrlForTest(prefix: string, port = NATS_PORT): string {
  return `nats://${NATS_HOST}:${port}?prefix=${prefix}`;
}

/** True if something accepts a TCP connection on the port within `timeoutMs`. */
export function natsAnswers(port = NATS_PORT, timeoutMs = 1_000): Promise<boolean> {
  return tcpAccepts(port, NATS_HOST, timeoutMs);
}

/** Why the NATS tests cannot run (no server on 4222), or false; with CI=true a missing server is a failure. */
export async function natsSkipReason(port = NATS_PORT): Promise<string | false> {
  if (await natsAnswers(port)) return false;
  const reason = `NATS is not answering on ${NATS_HOST}:${port} (start nats-server -js)`;
  if (process.env['CI'] === 'true') throw new Error(`${reason} (CI=true: NATS is required)`);
  return reason;
}

/** Why a test cannot start private servers (no nats-server binary), or false; with CI=true that is a failure. */
export function natsServerSkipReason(): string | false {
  if (spawnSync('nats-server', ['--version'], { stdio: 'ignore' }).status === 0) return false;
  const reason = 'nats-server is not installed (apt-get install nats-server)';
  if (process.env['CI'] === 'true') throw new Error(`${reason} (CI=true: it is required)`);
  return reason;
}

export interface PrivateNats {
  port: number;
  url: string;
  /** The server's process (to SIGKILL it). */
  child(): ChildProcess;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and store. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts `nats-server -js -sd <storeDir> -p <port>` (and, with `cluster`, `-cluster nats://127.0.0.1:<clusterPort>
 * -routes <routes> -n <name>` under cluster name `fennel-test`), resolving once it accepts connections.
 */
export async function startNats(options: { storeDir: string; port?: number; cluster?: { name: string; port: number; routes: number[] } }): Promise<PrivateNats> {
  const port = options.port ?? (await freePort());
  const args = ['-js', '-sd', options.storeDir, '-a', NATS_HOST, '-p', String(port)];
  if (options.cluster) {
    const { name, port: clusterPort, routes } = options.cluster;
    args.push('-n', name, '--cluster_name', 'fennel-test', '-cluster', `nats://${NATS_HOST}:${clusterPort}`, '-routes', routes.map((r) => `nats://${NATS_HOST}:${r}`).join(','));
  }
  let proc: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    proc = track(spawn('nats-server', args, { stdio: ['ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
    const deadline = Date.now() + 15_000;
    while (!(await natsAnswers(port, 500))) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`nats-server on port ${port} exited at start: ${stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`nats-server on port ${port} did not accept connections within 15 s: ${stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill(signal);
    await exited;
  };
  await launch();
  return {
    port,
    url: `nats://${NATS_HOST}:${port}`,
    child: () => proc!,
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: () => kill('SIGKILL'),
  };
}
