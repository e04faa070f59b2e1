// The entry point of a pool slot: a child process (process pool) or a worker thread (thread pool).
// It loads the app, says ready, then runs the jobs the pool sends, one at a time and in the order sent. Their outcomes
// go back in batches: what ran back to back is reported together, once no job is left to run, or before the next
// job begins once the oldest unreported outcome has waited SHORT_TASK_MS (a task the pool took for short may not be).

import { parentPort, workerData, isMainThread } from 'node:worker_threads';
import { loadApp } from '../load-app.ts';
import { LazyAbort } from '../lazy-abort.ts';
import { runJob } from '../run-job.ts';
import { SHORT_TASK_MS, type FromSlot, type Result, type SlotData, type ToSlot } from './ipc.ts';
import type { Job } from './pool.ts';

const inThread = !isMainThread && parentPort !== null;

function send(message: FromSlot): void {
  if (inThread) parentPort!.postMessage(message);
  else process.send?.(message);
}

function onMessage(handler: (message: ToSlot) => void): void {
  if (inThread) parentPort!.on('message', handler);
  else process.on('message', (m) => handler(m as ToSlot));
}

async function main(): Promise<void> {
  const data: SlotData = inThread ? (workerData as SlotData) : (JSON.parse(process.env['FENNEL_SLOT_DATA'] ?? '{}') as SlotData);
  const { app } = await loadApp(data.appPath);
  /** Jobs sent and not yet run, in order, and the abort controller of each job sent and not yet reported. */
  const queue: Job[] = [];
  const controllers = new Map<string, LazyAbort>();
  let unsent: Result[] = [];
  let oldestUnsentAt = 0;
  let draining = false;

  const flush = (): void => {
    if (unsent.length === 0) return;
    send({ type: 'done', results: unsent, rssBytes: process.memoryUsage.rss() });
    unsent = [];
  };

  // Runs the queue to its end. A job whose function returns a plain value ends within the loop's turn; a new `run`
  // message is read only between turns, so one batch of jobs is reported as one batch of outcomes.
  const drain = async (): Promise<void> => {
    draining = true;
    while (queue.length > 0) {
      const job = queue.shift()!;
      if (unsent.length > 0 && performance.now() - oldestUnsentAt >= SHORT_TASK_MS) flush();
      const controller = controllers.get(job.id) ?? new LazyAbort();
      const began = performance.now();
      const ran = runJob(app.registry, job, () => controller.signal, (metaJson) => send({ type: 'progress', id: job.id, metaJson }));
      const outcome = 'kind' in ran ? ran : await ran;
      const ended = performance.now();
      controllers.delete(job.id);
      if (unsent.length === 0) oldestUnsentAt = ended;
      unsent.push({ id: job.id, outcome, ms: ended - began });
    }
    flush();
    draining = false;
  };

  onMessage((message) => {
    switch (message.type) {
      case 'run':
        for (const job of message.jobs) {
          queue.push(job);
          controllers.set(job.id, new LazyAbort());
        }
        if (!draining) void drain();
        break;
      case 'abort':
        // A job not begun yet starts with its signal aborted.
        controllers.get(message.id)?.abort(new Error(message.reason));
        break;
    }
  });
  if (!inThread) {
    // A child process exits when its parent goes away, so an orphan never runs on.
    process.on('disconnect', () => {
      for (const controller of controllers.values()) controller.abort(new Error('worker exited'));
      process.exit(0);
    });
    // Ctrl-C reaches the whole process group; the worker decides when its slots stop, not the terminal.
    process.on('SIGINT', () => {});
    process.on('SIGTERM', () => {});
  }
  send({ type: 'ready' });
}

main().catch((error: unknown) => {
  send({ type: 'fatal', message: (error as Error).message ?? String(error) });
  process.exitCode = 1;
  if (!inThread) setTimeout(() => process.exit(1), 50);
});
