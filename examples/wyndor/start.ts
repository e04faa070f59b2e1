// `npm start`: the whole system on one machine, on the embedded SQLite broker (fennel.db here, or
// FENNEL_BROKER_URL): a worker pool (process pool × 2, task events on) and the gateway serving the Wyndor
// page, the dashboard and the API. Prints the URL and serves until Ctrl-C. PORT and HOST choose where.

import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = resolve(ROOT, 'src/cli/main.ts');
const TASKS = 'examples/wyndor/tasks.ts';
const port = process.env['PORT'] ?? '8888';
const host = process.env['HOST'] ?? '127.0.0.1';
const env = { ...process.env, FENNEL_BROKER_URL: process.env['FENNEL_BROKER_URL'] ?? 'sqlite://fennel.db' };

/** Starts a `fennel` command; resolves once a line of its output matches `ready`. */
function start(label: string, args: string[], ready: RegExp): { child: ChildProcess; ready: Promise<string> } {
  const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const readyLine = new Promise<string>((resolveLine, reject) => {
    let seen = false;
    const onLine = (chunk: Buffer): void => {
      for (const line of chunk.toString().split('\n')) {
        if (!line.trim()) continue;
        if (!seen && ready.test(line)) {
          seen = true;
          resolveLine(line);
        } else if (/"level":(40|50|60)|^fennel:|Error/.test(line)) {
          process.stderr.write(`[${label}] ${line}\n`); // warnings and errors only: the terminal stays readable
        }
      }
    };
    child.stdout.on('data', onLine);
    child.stderr.on('data', onLine);
    child.once('exit', (code, signal) => {
      if (!seen) reject(new Error(`${label} exited before it was ready (${signal ?? `code ${code}`})`));
    });
  });
  return { child, ready: readyLine };
}

const worker = start('worker', ['worker', '--app', TASKS, '--pool', 'process', '--concurrency', '2', '--events', '--loglevel', 'warn'], /worker ready/);
const gateway = start('gateway', ['gateway', '--app', TASKS, '--site', 'examples/wyndor/public', '--port', port, '--host', host], /gateway listening on/);
const children = [worker.child, gateway.child];

let stopping = false;
function stop(code: number): void {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const exits = children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => new Promise((r) => c.once('exit', r)));
  void Promise.all(exits).then(() => process.exit(code));
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));
for (const child of children) {
  child.once('exit', () => {
    if (!stopping) {
      process.stderr.write('a process of the app stopped; stopping the rest\n');
      stop(1);
    }
  });
}

try {
  await Promise.all([worker.ready, gateway.ready]);
} catch (error) {
  process.stderr.write(`npm start: ${(error as Error).message}\n`);
  stop(1);
}
const url = `http://${host}:${port}`;
process.stdout.write(
  [
    '',
    `  Wyndor LP app   ${url}/`,
    `  Dashboard       ${url}/dashboard/`,
    `  API             POST ${url}/api/tasks/wyndor.solve  {"args":[500]}`,
    `  Broker          ${env.FENNEL_BROKER_URL} (worker: process pool × 2)`,
    '',
    '  Ctrl-C to stop.',
    '',
  ].join('\n'),
);
