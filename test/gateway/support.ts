// Test support for the gateway: a real `fennel gateway` process, and a WebSocket client that records what the
// gateway pushes and waits for a message by predicate (never by time).

import assert from 'node:assert/strict';
import { connect as amqpConnect } from 'amqplib';
import { WebSocket } from 'ws';
import { runCli, stopProcess, type RunningWorker } from '../support/process.ts';
import { RABBIT_URL } from '../support/services.ts';

export const TASKS = 'test/gateway/fixtures/tasks.ts';

export interface RunningGateway {
  process: RunningWorker;
  url: string;
}

/** Starts `fennel gateway --port 0` (any free port) and waits for its ready line. */
export async function startGateway(env: Record<string, string>, flags: string[] = [], app = TASKS): Promise<RunningGateway> {
  const process = runCli(['gateway', '--app', app, '--port', '0', ...flags], env);
  const line = await process.waitForLine(/gateway listening on/);
  return { process, url: /listening on (http:\/\/\S+?);?\s/.exec(line)![1]!.replace(/;$/, '') };
}

/** Stops each gateway (SIGTERM), then deletes `queue` on the local RabbitMQ: the default queue the gateways' depth sampling may have declared. */
export async function stopGatewaysAndDeleteQueue(gateways: readonly RunningGateway[], queue: string): Promise<void> {
  for (const gateway of gateways) await stopProcess(gateway.process, 'SIGTERM');
  const connection = await amqpConnect(RABBIT_URL);
  const channel = await connection.createChannel();
  await channel.deleteQueue(queue);
  await connection.close();
}

/** Starts a gateway for `app` on redis:// with nothing listening, and asserts that GET `path` answers 503 BROKER_UNAVAILABLE with Retry-After. */
export async function assertBrokerUnavailable(path: string, app: string): Promise<void> {
  const gateway = await startGateway({ FENNEL_BROKER_URL: 'redis://127.0.0.1:1/0' }, [], app);
  try {
    const down = await fetch(`${gateway.url}${path}`);
    const body = (await down.json()) as Record<string, unknown>;
    assert.equal(down.status, 503, JSON.stringify(body));
    assert.equal(down.headers.get('retry-after'), '5');
    assert.equal(body['code'], 'BROKER_UNAVAILABLE');
    assert.match(String(body['error']), /broker unavailable: .*ECONNREFUSED/);
  } finally {
    await stopProcess(gateway.process, 'SIGTERM');
  }
}

export interface PushClient {
  socket: WebSocket;
  messages: Array<Record<string, unknown>>;
  send(message: unknown): void;
  /** Sends this text as it is (for frames that are not JSON). */
  sendRaw(text: string): void;
  /** Resolves with the first message (already received or coming) that matches. */
  next(predicate: (m: Record<string, unknown>) => boolean, what: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  close(): void;
}

export async function connect(baseUrl: string, query = ''): Promise<PushClient> {
  const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/api/ws${query}`);
  const messages: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  socket.on('message', (data) => {
    messages.push(JSON.parse(Buffer.from(data as Buffer).toString()) as Record<string, unknown>);
    for (const w of waiters) w();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
    socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
  return {
    socket,
    messages,
    send: (message) => socket.send(JSON.stringify(message)),
    sendRaw: (text) => socket.send(text),
    next(predicate, what, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = messages.find(predicate);
          if (!hit) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no WebSocket message: ${what}; got ${JSON.stringify(messages).slice(0, 2000)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => socket.close(),
  };
}

/** The task view in a `{type:'task'}` message for `id` in state `state`. */
export function taskMessage(id: string, state?: string): (m: Record<string, unknown>) => boolean {
  return (m) => {
    const task = m['task'] as { id?: string; state?: string } | undefined;
    return m['type'] === 'task' && task?.id === id && (state === undefined || task.state === state);
  };
}

export async function post(baseUrl: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const response = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown>, headers: response.headers };
}

export async function request(baseUrl: string, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown>; text: string }> {
  const response = await fetch(`${baseUrl}${path}`, { method, headers });
  const text = await response.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // metrics and pages are not JSON
  }
  return { status: response.status, body, text };
}
