// `npm start`: the whole system on one machine, on the embedded SQLite broker (fennel.db here, or
// FENNEL_BROKER_URL): a worker pool (process pool × 2, task events on) and the gateway serving the Wyndor
// page, the dashboard and the API. Prints the URL and serves until Ctrl-C. PORT and HOST choose where (PORT=0:
// any free port; the URL printed is the one the gateway got). The gateway and the worker stop with it, however
// it stops (../processes.ts).

import { startFennel, stopWithThisProcess, type Child } from '../processes.ts';

const TASKS = 'examples/wyndor/tasks.ts';
const port = process.env['PORT'] ?? '8888';
const host = process.env['HOST'] ?? '127.0.0.1';
const env = { ...process.env, FENNEL_BROKER_URL: process.env['FENNEL_BROKER_URL'] ?? 'sqlite://fennel.db' };
const say = (line: string): void => void process.stdout.write(`npm start: ${line}\n`);

/** Starts a `fennel` command; resolves with the first line of its output that matches `ready`. */
function start(label: string, args: string[], ready: RegExp): { child: Child; ready: Promise<string> } {
  const child = startFennel(label, args, { env, stdout: 'pipe', stderr: 'pipe' });
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
    child.process.stdout!.on('data', onLine);
    child.process.stderr!.on('data', onLine);
    child.process.once('exit', (code, signal) => {
      if (!seen) reject(new Error(`${label} exited before it was ready (${signal ?? `code ${code}`})`));
    });
  });
  return { child, ready: readyLine };
}

const worker = start('the worker', ['worker', '--app', TASKS, '--pool', 'process', '--concurrency', '2', '--events', '--loglevel', 'warn'], /worker ready/);
const gateway = start('the gateway', ['gateway', '--app', TASKS, '--site', 'examples/wyndor/public', '--port', port, '--host', host], /gateway listening on/);
const children = [gateway.child, worker.child];

// Ctrl-C is the way this ends (exit 0); a child that stops by itself, or fails to start, is an error (exit 1).
const stopper = stopWithThisProcess({ children: () => children, say, exitCode: () => 0 });
for (const child of children) void child.exited.then(() => stopper.stop(`${child.label} stopped by itself`, 1));

try {
  const [, listening] = await Promise.all([worker.ready, gateway.ready]);
  // "gateway listening on http://127.0.0.1:8888; dashboard …": the gateway's own URL, right with PORT=0 too.
  const url = /listening on (http:\/\/[^\s;]+)/.exec(listening)?.[1] ?? `http://${host}:${port}`;
  process.stdout.write(
    [
      '',
      `  Wyndor LP app   ${url}/`,
      `  Dashboard       ${url}/dashboard/`,
      `  API             POST ${url}/api/tasks/wyndor.solve  {"args":[500]}`,
      `  Broker          ${env.FENNEL_BROKER_URL} (worker: process pool × 2)`,
      `  Processes       gateway pid ${gateway.child.process.pid}, worker pid ${worker.child.process.pid}`,
      '',
      '  Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
} catch (error) {
  stopper.stop((error as Error).message, 1);
}
